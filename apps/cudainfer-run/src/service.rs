//! The set of cameras: added and removed while running, each on its own.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::camera::{Camera, Ending};
use crate::camera_uri::{CameraUri, UriError};
use crate::pipeline::PipelineSettings;

/// Most cameras at once: each holds a pipeline and threads.
pub const MAX_CAMERAS: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error(transparent)]
    Uri(#[from] UriError),
    #[error("already {MAX_CAMERAS} cameras: remove one first")]
    Full,
}

pub struct Service {
    pub settings: Arc<PipelineSettings>,
    pub loop_files: bool,
    /// Where file cameras added through the API may lie.
    pub allow_dirs: Vec<PathBuf>,
    cameras: Mutex<BTreeMap<u64, Arc<Camera>>>,
    next_id: Mutex<u64>,
}

impl Service {
    pub fn new(settings: PipelineSettings, loop_files: bool, allow_dirs: Vec<PathBuf>) -> Service {
        Service {
            settings: Arc::new(settings),
            loop_files,
            allow_dirs,
            cameras: Mutex::default(),
            next_id: Mutex::new(1),
        }
    }

    /// Starts a camera; `trusted` (the command line, the config file) skips
    /// the allowed-directories check that API requests get.
    pub fn add(
        &self,
        uri: CameraUri,
        loop_file: Option<bool>,
        trusted: bool,
    ) -> Result<Arc<Camera>, AddError> {
        if !trusted {
            uri.check_allowed(&self.allow_dirs)?;
        }
        let mut cameras = self.cameras.lock().unwrap();
        if cameras.len() >= MAX_CAMERAS {
            return Err(AddError::Full);
        }
        let mut next = self.next_id.lock().unwrap();
        let n = *next;
        *next += 1;
        let camera = Camera::start(
            format!("cam-{n}"),
            uri,
            loop_file.unwrap_or(self.loop_files),
            self.settings.clone(),
        );
        cameras.insert(n, camera.clone());
        Ok(camera)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Camera>> {
        let n = parse_id(id)?;
        self.cameras.lock().unwrap().get(&n).cloned()
    }

    /// Stops and removes camera `id`; false when there is none. Returns once
    /// its pipeline is down, so it publishes nothing more; the frames it had
    /// not yet published are dropped, so that this is prompt.
    pub fn remove(&self, id: &str) -> bool {
        let Some(n) = parse_id(id) else {
            return false;
        };
        let camera = self.cameras.lock().unwrap().remove(&n);
        match camera {
            Some(c) => {
                c.stop(Ending::Discard);
                true
            }
            None => false,
        }
    }

    pub fn list(&self) -> Vec<Arc<Camera>> {
        self.cameras.lock().unwrap().values().cloned().collect()
    }

    /// Ends every camera at once (EOS each, every decoded frame published,
    /// outputs flushed) and waits.
    pub fn shutdown(&self) {
        let cameras: Vec<_> = std::mem::take(&mut *self.cameras.lock().unwrap())
            .into_values()
            .collect();
        for c in &cameras {
            c.request_stop(Ending::Drain);
        }
        for c in &cameras {
            c.stop(Ending::Drain);
        }
    }
}

fn parse_id(id: &str) -> Option<u64> {
    id.strip_prefix("cam-")?.parse().ok()
}
