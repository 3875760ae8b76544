//! The set of cameras: added and removed while running, each on its own.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cudainfer_run::camera_id::{self, Shard};
use cudainfer_run::camera_uri::{CameraUri, UriError};

use crate::camera::{Camera, Ending};
use crate::locked::Locked;
use crate::pipeline::PipelineSettings;
use crate::stats::CameraState;

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
    #[error("this instance runs shard {0} of a camera list shared by {1} instances, so its cameras are neither added nor removed through the API: change the shared list (the config file) and restart or roll the instances")]
    Sharded(Shard, u32),
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
    /// By order of addition (the order /cameras lists them in).
    cameras: Mutex<BTreeMap<u64, Arc<Camera>>>,
    next: Mutex<u64>,
    shard: Option<Shard>,
    ending: AtomicBool,
}

/// The GPU of `gpus` that the fewest of the running cameras (`in_use`,
/// their GPUs) are on, the first listed on ties: cameras listed in order
/// go round the GPUs, and one added later fills the emptiest.
pub fn least_used(gpus: &[u32], in_use: impl Iterator<Item = u32>) -> u32 {
    let mut counts = vec![0usize; gpus.len()];
    for d in in_use {
        if let Some(i) = gpus.iter().position(|&g| g == d) {
            counts[i] += 1;
        }
    }
    let least = (0..gpus.len()).min_by_key(|&i| (counts[i], i)).unwrap_or(0);
    gpus.get(least).copied().unwrap_or(0)
}

impl Service {
    pub fn new(
        settings: PipelineSettings,
        loop_files: bool,
        allow_dirs: Vec<PathBuf>,
        max_cameras: usize,
        shard: Option<Shard>,
    ) -> Service {
        Service {
            settings: Arc::new(settings),
            loop_files,
            allow_dirs,
            max_cameras,
            stopping: Mutex::default(),
            cameras: Mutex::default(),
            next: Mutex::new(0),
            shard,
            ending: AtomicBool::new(false),
        }
    }

    /// Starts a camera of the configured list under its id; these skip the
    /// allowed-directories check that API requests get.
    pub fn add_listed(&self, id: String, uri: CameraUri) -> Result<Arc<Camera>, AddError> {
        uri.open_source(None)?;
        self.start(Some(id), uri, None, None)
    }

    /// Starts a camera asked for through the API: it must lie in the
    /// allowed directories, and inference must have headroom. Its id is
    /// derived from its URI, like that of a listed camera without one.
    pub fn add_requested(
        &self,
        uri: CameraUri,
        loop_file: Option<bool>,
    ) -> Result<Arc<Camera>, AddError> {
        if let Some(shard) = self.shard {
            return Err(AddError::Sharded(shard, shard.count));
        }
        // Checked here and again, on the resolved path, at every (re)start.
        uri.check_allowed(&self.allow_dirs)?;
        if let Some(reason) = self.overloaded() {
            return Err(AddError::NoHeadroom(reason));
        }
        let allowed = Some(self.allow_dirs.clone());
        self.start(None, uri, allowed, loop_file)
    }

    fn start(
        &self,
        id: Option<String>,
        uri: CameraUri,
        allowed: Option<Vec<PathBuf>>,
        loop_file: Option<bool>,
    ) -> Result<Arc<Camera>, AddError> {
        let stopping: Vec<String> = {
            let mut stopping = self.stopping.locked();
            stopping.retain(|c| !c.ended());
            stopping.iter().map(|c| c.id.clone()).collect()
        };
        let mut cameras = self.cameras.locked();
        if cameras.len() + stopping.len() >= self.max_cameras {
            return Err(AddError::Full(self.max_cameras));
        }
        // Not the id of a camera still stopping either: its last results
        // may still be on their way out under that id.
        let id = id.unwrap_or_else(|| {
            camera_id::first_free(&camera_id::derived(uri.identity()), |id| {
                cameras.values().any(|c| c.id == id) || stopping.iter().any(|s| s == id)
            })
        });
        let mut next = self.next.locked();
        let n = *next;
        let device = least_used(&self.settings.gpus, cameras.values().map(|c| c.device()));
        let settings = if device == self.settings.device_id {
            self.settings.clone()
        } else {
            Arc::new(PipelineSettings {
                device_id: device,
                ..(*self.settings).clone()
            })
        };
        let camera = Camera::start(
            id,
            uri,
            allowed,
            loop_file.unwrap_or(self.loop_files),
            settings,
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

    /// The camera of this id.
    pub fn get(&self, id: &str) -> Option<Arc<Camera>> {
        self.cameras.locked().values().find(|c| c.id == id).cloned()
    }

    /// Takes the camera of this id out and asks it to stop, dropping the frames
    /// it has not yet published so that this is prompt; `None` when there
    /// is none. The caller waits for [`Camera::ended`]: until then it may
    /// still publish.
    pub fn remove(&self, id: &str) -> Option<Arc<Camera>> {
        let camera = {
            let mut cameras = self.cameras.locked();
            let n = *cameras.iter().find(|(_, c)| c.id == id)?.0;
            cameras.remove(&n)?
        };
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

    /// Why the service is not ready for its work, if it is not: ending, or
    /// a camera still making its first connection. A camera that failed
    /// and retries within its backoff is no reason: the instance does its
    /// part, and a restart would not bring the camera back sooner.
    pub fn not_ready(&self) -> Option<String> {
        if self.ending.load(Ordering::Relaxed) {
            return Some("the service is ending".into());
        }
        let starting: Vec<String> = self
            .list()
            .iter()
            .filter(|c| {
                let s = c.stats.snapshot();
                s.state == CameraState::Connecting && s.reconnects == 0 && s.frames_out == 0
            })
            .map(|c| c.id.clone())
            .collect();
        (!starting.is_empty()).then(|| {
            format!(
                "cameras connecting for the first time: {}",
                starting.join(", ")
            )
        })
    }

    /// The share of a camera list this instance runs, if it is sharded.
    pub fn shard(&self) -> Option<Shard> {
        self.shard
    }

    /// Ends every camera at once (EOS each, every decoded frame published,
    /// outputs flushed) and waits, for those removed and still stopping
    /// too.
    pub fn shutdown(&self) {
        self.ending.store(true, Ordering::Relaxed);
        let mut cameras: Vec<_> = std::mem::take(&mut *self.cameras.locked())
            .into_values()
            .collect();
        for c in &cameras {
            c.request_stop(Ending::Drain);
        }
        // Removed cameras still stopping are waited for too: the process
        // ending under them would leave their recordings unfinalised.
        cameras.extend(self.stopping.locked().iter().cloned());
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

#[cfg(test)]
mod tests {
    use super::least_used;

    #[test]
    fn cameras_go_to_the_least_used_gpu() {
        let gpus = [0, 1];
        // Listed in order: round the GPUs.
        let mut on = Vec::new();
        for _ in 0..5 {
            on.push(least_used(&gpus, on.iter().copied()));
        }
        assert_eq!(on, [0, 1, 0, 1, 0]);
        // Removals leave a gap that the next camera fills.
        assert_eq!(least_used(&gpus, [0, 0, 0, 1].into_iter()), 1);
        assert_eq!(least_used(&[1, 0], [].into_iter()), 1);
        assert_eq!(least_used(&[2], [2, 2].into_iter()), 2);
        // A GPU no longer listed counts for none.
        assert_eq!(least_used(&gpus, [3, 3, 0].into_iter()), 1);
    }
}
