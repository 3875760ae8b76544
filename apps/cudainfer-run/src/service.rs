//! The set of cameras: added and removed while running, each on its own.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use cudainfer_run::camera_uri::{CameraUri, UriError};

use crate::camera::{Camera, Ending};
use crate::locked::Locked;
use crate::pipeline::PipelineSettings;

#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error(transparent)]
    Uri(#[from] UriError),
    #[error("already {0} cameras (removed ones still stopping count), the most this service runs (--max-cameras): remove one first")]
    Full(usize),
    #[error("cannot start the camera's thread ({0}): the system's limit on threads or processes is reached; remove cameras or raise the limit")]
    Resources(std::io::Error),
    #[error("no headroom for another camera: {0}")]
    NoHeadroom(String),
}

/// A camera added through the API is refused while a camera skipped frames
/// for overload this recently: inference is already at its limit.
pub const HEADROOM_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Service {
    pub settings: Arc<PipelineSettings>,
    pub loop_files: bool,
    /// Where file cameras added through the API may lie.
    pub allow_dirs: Vec<PathBuf>,
    max_cameras: usize,
    /// Removed cameras whose threads have not ended yet (stuck in their
    /// source): they hold threads, so they count toward `max_cameras`.
    stopping: Mutex<Vec<Arc<Camera>>>,
    cameras: Mutex<BTreeMap<u64, Arc<Camera>>>,
    next_id: Mutex<u64>,
}

impl Service {
    pub fn new(
        settings: PipelineSettings,
        loop_files: bool,
        allow_dirs: Vec<PathBuf>,
        max_cameras: usize,
    ) -> Service {
        Service {
            settings: Arc::new(settings),
            loop_files,
            allow_dirs,
            max_cameras,
            stopping: Mutex::default(),
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
        // Checked here and again, on the resolved path, at every (re)start.
        let allowed = if trusted {
            uri.open_source(None)?;
            None
        } else {
            uri.check_allowed(&self.allow_dirs)?;
            Some(self.allow_dirs.clone())
        };
        if !trusted {
            if let Some(reason) = self.overloaded() {
                return Err(AddError::NoHeadroom(reason));
            }
        }
        let stopping = {
            let mut stopping = self.stopping.locked();
            stopping.retain(|c| !c.ended());
            stopping.len()
        };
        let mut cameras = self.cameras.locked();
        if cameras.len() + stopping >= self.max_cameras {
            return Err(AddError::Full(self.max_cameras));
        }
        let mut next = self.next_id.locked();
        let n = *next;
        let camera = Camera::start(
            format!("cam-{n}"),
            uri,
            allowed,
            loop_file.unwrap_or(self.loop_files),
            self.settings.clone(),
        )
        .map_err(AddError::Resources)?;
        *next += 1;
        cameras.insert(n, camera.clone());
        Ok(camera)
    }

    /// Why inference has no headroom now: cameras that skipped frames for
    /// overload within [`HEADROOM_WINDOW`]; `None` when none did.
    pub fn overloaded(&self) -> Option<String> {
        let skipping: Vec<String> = self
            .list()
            .iter()
            .filter(|c| c.stats.skipped_within(HEADROOM_WINDOW))
            .map(|c| c.id.clone())
            .collect();
        (!skipping.is_empty()).then(|| {
            format!(
                "inference is skipping frames to hold the latency budget ({} in the last {} s): \
                 another camera would make every camera skip more; remove one, or add a GPU",
                skipping.join(", "),
                HEADROOM_WINDOW.as_secs()
            )
        })
    }

    /// Camera `cam-{n}`.
    pub fn get(&self, n: u64) -> Option<Arc<Camera>> {
        self.cameras.locked().get(&n).cloned()
    }

    /// Takes camera `cam-{n}` out and asks it to stop, dropping the frames
    /// it has not yet published so that this is prompt; `None` when there
    /// is none. The caller waits for [`Camera::ended`]: until then it may
    /// still publish.
    pub fn remove(&self, n: u64) -> Option<Arc<Camera>> {
        let camera = self.cameras.locked().remove(&n)?;
        camera.request_stop(Ending::Discard);
        self.stopping.locked().push(camera.clone());
        Some(camera)
    }

    pub fn list(&self) -> Vec<Arc<Camera>> {
        self.cameras.locked().values().cloned().collect()
    }

    /// Reopens the results file of every camera (after log rotation); how
    /// many elements did.
    pub fn reopen_outputs(&self) -> usize {
        self.list().iter().map(|c| c.reopen_outputs()).sum()
    }

    /// Ends every camera at once (EOS each, every decoded frame published,
    /// outputs flushed) and waits.
    pub fn shutdown(&self) {
        let cameras: Vec<_> = std::mem::take(&mut *self.cameras.locked())
            .into_values()
            .collect();
        for c in &cameras {
            c.request_stop(Ending::Drain);
        }
        // One deadline for all: stuck cameras do not add up their waits.
        let waited = std::time::Instant::now();
        while !cameras.iter().all(|c| c.ended()) && waited.elapsed() < Camera::STOP_WAIT {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        for c in cameras.iter().filter(|c| !c.ended()) {
            c.report_stuck();
        }
    }
}
