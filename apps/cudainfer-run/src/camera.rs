//! A camera: a thread that builds its pipeline, watches it, and on a
//! failure tears it down alone and tries again with backoff, until it is
//! removed or the service ends.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use cudainfer_run::camera_uri::{redact_text, CameraUri, SourceKind};
use gst::prelude::*;

use crate::locked::Locked;
use crate::log::{self, Level};
use crate::pipeline::{self, PipelineSettings};
use crate::snapshot::SnapshotTap;
use crate::stats::{CameraState, CameraStats};

/// First retry after this; doubled per failure up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// A camera that ran this long before failing starts its backoff anew.
const HEALTHY_RUN: Duration = Duration::from_secs(10);
/// No decoded frame for this long after the first one: the source stalled
/// (a network cut that closes nothing), so the camera is restarted.
const STALL_TIMEOUT: Duration = Duration::from_secs(6);
/// The first frame may take this long (connection, model load).
const START_TIMEOUT: Duration = Duration::from_secs(40);
/// Longest wait for EOS to reach the sinks when stopping.
const EOS_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a pipeline to reach NULL before the camera goes on.
const TEARDOWN_WAIT: Duration = Duration::from_secs(3);

/// How a camera ends. Either way its outputs are flushed (EOS: JSON lines
/// complete, MQTT delivered, recordings finalised) before it is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The frames already decoded are still inferred and published: a
    /// shutdown loses no result.
    Drain,
    /// They are dropped: a removal returns at once instead of after a dozen
    /// inferences on a loaded machine.
    Discard,
}

/// How one run of the pipeline ended.
enum Outcome {
    Stopped,
    Finished,
    /// A looped file camera that records reached the end of its file.
    Looped,
    Failed(String),
}

#[derive(Default)]
struct Control {
    /// Set once: the first request decides how the camera ends.
    stop: Mutex<Option<Ending>>,
    wake: Condvar,
}

impl Control {
    fn ending(&self) -> Option<Ending> {
        *self.stop.locked()
    }

    fn stopped(&self) -> bool {
        self.ending().is_some()
    }

    /// Sleeps up to `d`; true when stopped meanwhile.
    fn wait(&self, d: Duration) -> bool {
        let guard = self.stop.locked();
        let (guard, _) = self
            .wake
            .wait_timeout_while(guard, d, |s| s.is_none())
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.is_some()
    }
}

pub struct Camera {
    pub id: String,
    pub uri: CameraUri,
    pub loop_file: bool,
    /// The GPU it decodes and infers on (on the GPU path).
    device: u32,
    pub stats: Arc<CameraStats>,
    /// Its snapshots, kept across its pipelines' runs.
    pub snapshots: Arc<SnapshotTap>,
    control: Arc<Control>,
    /// Set by the camera's thread as it ends.
    ended: Arc<AtomicBool>,
    /// The running pipeline, for /metrics to read `trtinfer`'s counters.
    pipeline: Arc<Mutex<Option<gst::Pipeline>>>,
}

impl Camera {
    /// The GPU the camera decodes and infers on (on the GPU path).
    pub fn device(&self) -> u32 {
        self.device
    }

    /// Longest wait for a camera's thread to end once asked to: a source
    /// stuck in a call that never returns must not hold a removal or the
    /// shutdown. Past it the thread is left to end on its own.
    pub const STOP_WAIT: Duration = Duration::from_secs(12);

    /// Starts the camera's thread; `allowed` (for cameras added through
    /// the API) are the directories a file camera must stay in, checked
    /// again at every (re)start. An error when no thread can be started.
    pub fn start(
        id: String,
        uri: CameraUri,
        allowed: Option<Vec<PathBuf>>,
        loop_file: bool,
        settings: Arc<PipelineSettings>,
    ) -> std::io::Result<Arc<Camera>> {
        let ended = Arc::new(AtomicBool::new(false));
        let done = ended.clone();
        let camera = Arc::new(Camera {
            id,
            uri,
            loop_file,
            device: settings.device_id,
            stats: Arc::default(),
            snapshots: Arc::default(),
            control: Arc::default(),
            ended,
            pipeline: Arc::default(),
        });
        camera.stats.set_state(CameraState::Connecting);
        let worker = Worker {
            id: camera.id.clone(),
            uri: camera.uri.clone(),
            allowed,
            loop_file,
            settings,
            stats: camera.stats.clone(),
            snapshots: camera.snapshots.clone(),
            control: camera.control.clone(),
            pipeline: camera.pipeline.clone(),
        };
        std::thread::Builder::new()
            .name(format!("camera {}", camera.id))
            .spawn(move || {
                worker.run();
                done.store(true, Ordering::Release);
            })?;
        Ok(camera)
    }

    /// Asks the camera to end (EOS, outputs flushed); does not wait.
    pub fn request_stop(&self, ending: Ending) {
        self.control.stop.locked().get_or_insert(ending);
        self.control.wake.notify_all();
    }

    /// Whether the camera's thread has ended.
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Logs that the camera did not end within [`Self::STOP_WAIT`].
    pub fn report_stuck(&self) {
        log::event(
            Level::Warn,
            "camera_stuck",
            &[
                ("camera", &self.id),
                ("waited_ms", &Self::STOP_WAIT.as_millis()),
                ("action", &"left to end on its own"),
            ],
        );
    }

    /// Emits `reopen` on the running pipeline's `inferpublish` elements;
    /// how many reopened a file.
    pub fn reopen_outputs(&self) -> usize {
        let Some(pipeline) = self.pipeline.locked().clone() else {
            return 0;
        };
        pipeline
            .iterate_elements()
            .into_iter()
            .flatten()
            .filter(|e| e.factory().is_some_and(|f| f.name() == "inferpublish"))
            .filter(|e| e.emit_by_name::<bool>("reopen", &[]))
            .count()
    }

    /// A `trtinfer` property of the running pipeline (`largest-batch`,
    /// `busy`, …).
    pub fn infer_property<T: for<'a> glib::value::FromValue<'a> + 'static>(
        &self,
        name: &str,
    ) -> Option<T> {
        let pipeline = self.pipeline.locked().clone()?;
        pipeline
            .iterate_elements()
            .into_iter()
            .flatten()
            .find(|e| e.factory().is_some_and(|f| f.name() == "trtinfer"))
            .map(|e| e.property::<T>(name))
    }
}

/// What the camera's thread owns.
struct Worker {
    id: String,
    uri: CameraUri,
    allowed: Option<Vec<PathBuf>>,
    loop_file: bool,
    settings: Arc<PipelineSettings>,
    stats: Arc<CameraStats>,
    snapshots: Arc<SnapshotTap>,
    control: Arc<Control>,
    pipeline: Arc<Mutex<Option<gst::Pipeline>>>,
}

impl Worker {
    fn run(self) {
        let mut backoff = MIN_BACKOFF;
        log::event(
            Level::Info,
            "camera_started",
            &[("camera", &self.id), ("uri", &self.uri.redacted())],
        );
        loop {
            if self.control.stopped() {
                break;
            }
            self.stats.set_state(CameraState::Connecting);
            self.stats.forget_in_flight();
            self.stats.new_run();
            let started = Instant::now();
            // The file stays open (`source`) while its pipeline runs.
            let built = self
                .uri
                .open_source(self.allowed.as_deref())
                .map_err(|e| e.to_string())
                .and_then(|source| {
                    pipeline::build(
                        &self.id,
                        &source.uri,
                        &self.uri,
                        &self.settings,
                        &self.stats,
                        &self.snapshots,
                    )
                    .map(|p| (p, source))
                    .map_err(|e| e.to_string())
                });
            let outcome = match built {
                Ok((p, _source)) => {
                    *self.pipeline.locked() = Some(p.clone());
                    let outcome = self.run_once(&p);
                    // The stopped pipeline stays for /metrics (trtinfer keeps
                    // its counters after stop) until the next one replaces it.
                    self.tear_down(p);
                    outcome
                }
                // An element that cannot be loaded for want of descriptors
                // reads as a missing plugin: say what is really missing.
                Err(e) if descriptors_exhausted() => {
                    Outcome::Failed(format!("{NO_DESCRIPTORS} ({e})"))
                }
                Err(e) => Outcome::Failed(e),
            };
            match outcome {
                Outcome::Stopped => break,
                // Played again in a new pipeline at once: no failure.
                Outcome::Looped => continue,
                Outcome::Finished => {
                    self.stats.set_state(CameraState::Finished);
                    log::event(Level::Info, "camera_finished", &[("camera", &self.id)]);
                    while !self.control.wait(Duration::from_secs(3600)) {}
                    break;
                }
                Outcome::Failed(reason) => {
                    if started.elapsed() > HEALTHY_RUN {
                        backoff = MIN_BACKOFF;
                    }
                    self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    self.stats.set_state(CameraState::Retrying);
                    self.stats.set_error(reason.clone());
                    log::event(
                        Level::Warn,
                        "camera_failed",
                        &[
                            ("camera", &self.id),
                            ("reason", &reason),
                            ("retry_in_ms", &backoff.as_millis()),
                        ],
                    );
                    if self.control.wait(backoff) {
                        break;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        self.stats.set_state(CameraState::Stopping);
        log::event(Level::Info, "camera_stopped", &[("camera", &self.id)]);
    }

    /// Sets the pipeline to NULL on a thread of its own and waits a bounded
    /// time: a source stuck in its teardown (rtspsrc after a lost server can
    /// take minutes) must not keep the camera from its next try, nor the
    /// service from ending.
    fn tear_down(&self, p: gst::Pipeline) {
        let (tx, rx) = std::sync::mpsc::channel();
        let here = p.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("teardown {}", self.id))
            .spawn(move || {
                let _ = tx.send(stop_every_element(&p));
            });
        let left = if spawned.is_err() {
            // No thread to spare (a limit on threads reached): tear down
            // here, unbounded, rather than leave the pipeline playing.
            Some(stop_every_element(&here))
        } else {
            rx.recv_timeout(TEARDOWN_WAIT).ok()
        };
        if let Some(left) = left {
            if !left.forced.is_empty() {
                log::event(
                    Level::Warn,
                    "teardown_forced",
                    &[("camera", &self.id), ("elements", &left.forced.join(","))],
                );
            }
            if !left.tasks.is_empty() {
                log::event(
                    Level::Warn,
                    "pipeline_kept",
                    &[
                        ("camera", &self.id),
                        ("tasks", &left.tasks.join(",")),
                        (
                            "reason",
                            &"streaming tasks that never got a thread; freeing the pipeline \
                              would wait for them forever",
                        ),
                    ],
                );
            }
            return;
        }
        log::event(
            Level::Warn,
            "teardown_slow",
            &[
                ("camera", &self.id),
                ("waited_ms", &TEARDOWN_WAIT.as_millis()),
            ],
        );
    }

    fn redact(&self, text: &str) -> String {
        redact_text(text, &self.uri.secrets())
    }

    fn error_text(&self, e: &gst::message::Error) -> String {
        let debug = e.debug().map(|d| format!(" ({d})")).unwrap_or_default();
        let from = e.src().map(|s| s.name().to_string()).unwrap_or_default();
        self.redact(&format!("{from}: {}{debug}", e.error()))
    }

    fn run_once(&self, p: &gst::Pipeline) -> Outcome {
        let bus = p.bus().expect("a pipeline has a bus");
        if p.set_state(gst::State::Playing).is_err() {
            // The element's error says why.
            let reason = bus
                .timed_pop_filtered(gst::ClockTime::from_seconds(1), &[gst::MessageType::Error])
                .and_then(|m| match m.view() {
                    gst::MessageView::Error(e) => Some(self.error_text(e)),
                    _ => None,
                })
                .unwrap_or_else(|| "the pipeline did not start".into());
            return Outcome::Failed(reason);
        }
        let mut stopping: Option<Instant> = None;
        let in_at_start = self.stats.frames_in.load(Ordering::Relaxed);
        let mut last_in = in_at_start;
        let mut progress = Instant::now();
        let mut seen_frame = false;
        let out_at_start = self.stats.frames_out.load(Ordering::Relaxed);
        loop {
            let asked = Instant::now();
            let popped = bus.timed_pop(gst::ClockTime::from_mseconds(100));
            if popped.is_none() && asked.elapsed() < Duration::from_millis(50) {
                // A bus made when no descriptor was left cannot wait: its
                // pop returns at once (a loop that would spin) and nothing
                // posted on it arrives.
                return Outcome::Failed(format!(
                    "the pipeline's message bus cannot wait for messages: {NO_DESCRIPTORS}"
                ));
            }
            if let Some(msg) = popped {
                match msg.view() {
                    gst::MessageView::Error(e) => {
                        if stopping.is_some() {
                            return Outcome::Stopped;
                        }
                        return Outcome::Failed(self.error_text(e));
                    }
                    gst::MessageView::Eos(_) => {
                        if stopping.is_some() {
                            return Outcome::Stopped;
                        }
                        if self.uri.kind() != SourceKind::File {
                            return Outcome::Failed("the stream ended".into());
                        }
                        if !self.loop_file {
                            return Outcome::Finished;
                        }
                        // The EOS has finalised the recording (splitmuxsink
                        // takes no data after it), and a seek would restart
                        // its running time: a recording camera plays its
                        // file again in a new pipeline, whose recording
                        // goes on with the next segment.
                        if self.settings.record.is_some() {
                            return Outcome::Looped;
                        }
                        if let Err(e) = loop_to_start(p) {
                            return Outcome::Failed(format!(
                                "cannot seek back to loop the file: {e}"
                            ));
                        }
                    }
                    // rtspsrc reports a lost connection as a warning and may
                    // then play out what it holds for a long time: a camera
                    // whose source cannot read is restarted at once.
                    gst::MessageView::Warning(w)
                        if stopping.is_none()
                            && (w.error().matches(gst::ResourceError::Read)
                                || w.error().matches(gst::ResourceError::OpenReadWrite)) =>
                    {
                        let debug = w.debug().map(|d| format!(" ({d})")).unwrap_or_default();
                        return Outcome::Failed(self.redact(&format!("{}{debug}", w.error())));
                    }
                    gst::MessageView::Element(e)
                        if e.structure()
                            .is_some_and(|s| s.name() == "trtinfer-skipped") =>
                    {
                        if let Some(total) =
                            e.structure().and_then(|s| s.get::<u64>("skipped").ok())
                        {
                            self.stats.skipping(total);
                        }
                    }
                    gst::MessageView::Warning(w) => log::event(
                        Level::Warn,
                        "camera_warning",
                        &[
                            ("camera", &self.id),
                            ("message", &self.redact(&w.error().to_string())),
                        ],
                    ),
                    _ => {}
                }
            }
            if let (None, Some(ending)) = (stopping, self.control.ending()) {
                self.stats.set_state(CameraState::Stopping);
                if self.stats.frames_in.load(Ordering::Relaxed) == in_at_start {
                    // No frame came in: nothing to publish or record, and
                    // an EOS would wait out EOS_TIMEOUT for a source that
                    // never started.
                    return Outcome::Stopped;
                }
                // EOS from the sources: the results elements write (and
                // MQTT delivers) what they have, recordings are finalised.
                // Sent from a thread of its own: a serialized event waits for
                // the pad's streaming thread, which a stuck branch keeps
                // forever; EOS_TIMEOUT then ends the wait, and the teardown
                // frees that thread.
                let pipeline = p.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("eos {}", self.id))
                    .spawn(move || send_eos(&pipeline, ending));
                if spawned.is_err() {
                    // No thread to spare: drain from here (the service's
                    // own deadline still bounds a stuck branch).
                    send_eos(p, ending);
                }
                stopping = Some(Instant::now());
            }
            if let Some(since) = stopping {
                if since.elapsed() > EOS_TIMEOUT {
                    return Outcome::Stopped;
                }
                continue;
            }
            let frames_in = self.stats.frames_in.load(Ordering::Relaxed);
            if frames_in != last_in {
                last_in = frames_in;
                progress = Instant::now();
                seen_frame = true;
            }
            if self.stats.frames_out.load(Ordering::Relaxed) != out_at_start
                && self.stats.state() != CameraState::Running
            {
                self.stats.set_state(CameraState::Running);
                log::event(Level::Info, "camera_running", &[("camera", &self.id)]);
            }
            let limit = if seen_frame {
                STALL_TIMEOUT
            } else {
                START_TIMEOUT
            };
            if progress.elapsed() > limit {
                return Outcome::Failed(format!("no frame for {} s", limit.as_secs()));
            }
        }
    }
}

const NO_DESCRIPTORS: &str = "no file descriptor was left (the process's limit on open files is \
     reached): remove cameras or raise the limit (ulimit -n, systemd's LimitNOFILE=)";

/// Whether the process has no file descriptor left to open.
fn descriptors_exhausted() -> bool {
    match std::fs::File::open("/dev/null") {
        Ok(_) => false,
        Err(e) => e.raw_os_error() == Some(libc::EMFILE),
    }
}

/// What a teardown left behind.
#[derive(Default)]
struct Leftovers {
    /// Elements still above NULL after the pipeline's change to NULL.
    forced: Vec<String>,
    /// Pads whose streaming task is not stopped at NULL.
    tasks: Vec<String>,
}

/// Sets the pipeline to NULL, then every element it holds that is still
/// above NULL. A start that failed half way (a thread the limit refused)
/// can leave elements the bin's change skips, and pads whose task never
/// got its thread: GStreamer 1.22 marks such a task running, and the pad's
/// last unref then joins it forever. A pipeline with such pads is kept
/// alive (never unreffed): a small leak, where the unref would hang the
/// thread that dropped it (the service's shutdown, a removal).
fn stop_every_element(p: &gst::Pipeline) -> Leftovers {
    let _ = p.set_state(gst::State::Null);
    let mut left = Leftovers::default();
    for e in p.iterate_recurse().into_iter().flatten() {
        if e.current_state() != gst::State::Null || e.pending_state() != gst::State::VoidPending {
            left.forced.push(e.name().to_string());
            let _ = e.set_state(gst::State::Null);
        }
        for pad in e.pads() {
            if pad.task_state() != gst::TaskState::Stopped {
                left.tasks.push(format!("{}:{}", e.name(), pad.name()));
            }
        }
    }
    if !left.tasks.is_empty() {
        std::mem::forget(p.clone());
    }
    left
}

/// Plays a file camera again from its start, at its real rate.
///
/// A flushing seek resets the running time to 0, but the sinks are not
/// `async` (a camera must not wait for preroll), so the pipeline never loses
/// its state and never gives its elements a new base time: the clock stays
/// a whole clip ahead and a synchronised sink renders the next loop as fast as
/// it is decoded. Pausing around the seek makes PLAYING give a new base time
/// from the reset running time, as an `async` sink's preroll would.
fn loop_to_start(p: &gst::Pipeline) -> Result<(), glib::BoolError> {
    p.set_state(gst::State::Paused)
        .map_err(|_| glib::bool_error!("cannot pause"))?;
    p.seek_simple(
        gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT,
        gst::ClockTime::ZERO,
    )?;
    p.set_state(gst::State::Playing)
        .map_err(|_| glib::bool_error!("cannot play again"))?;
    Ok(())
}

/// EOS into every branch the decoder feeds (the inference branch and any
/// other stream's fakesink), not through the source: a source that is
/// stuck, or a live one, might never pass it on.
///
/// The frames ahead of the EOS (the queue's and those in inference) are no
/// longer paced: a synchronised sink played them out in real time, 3 s at
/// 5 fps. With `Ending::Discard` a flush drops them first.
fn send_eos(p: &gst::Pipeline, ending: Ending) {
    if let Some(sink) = p.by_name(pipeline::RESULTS_SINK) {
        sink.set_property("sync", false);
    }
    let mut sent = false;
    if let Some(pad) = p.by_name("infer-queue").and_then(|e| e.static_pad("sink")) {
        if ending == Ending::Discard {
            // Flush start unblocks a push into the full queue; holding the
            // stream lock then keeps upstream from slipping a frame in
            // between the flush and the EOS.
            pad.send_event(gst::event::FlushStart::new());
            let _stream = pad.stream_lock();
            pad.send_event(gst::event::FlushStop::new(false));
            sent = pad.send_event(gst::event::Eos::new());
        } else {
            sent = pad.send_event(gst::event::Eos::new());
        }
    }
    for sink in p.iterate_sinks().into_iter().flatten() {
        if sink.name().starts_with("other-stream") {
            if let Some(pad) = sink.static_pad("sink") {
                pad.send_event(gst::event::Eos::new());
            }
        }
    }
    if !sent {
        p.send_event(gst::event::Eos::new());
    }
}
