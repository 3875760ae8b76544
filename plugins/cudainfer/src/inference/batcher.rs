//! Batching across streams without a muxer: every `trtinfer` that loads the
//! same model with the same providers on the same GPU (and `batch-group`)
//! shares one [`Batcher`]: one ONNX Runtime session and one worker thread.
//! Streams submit frames' tensors; the worker gathers them into one batch
//! until it is full (`max-batch-size`, and what the model takes), the
//! oldest frame's latency budget (`batch-timeout`) is spent, or no member
//! stream can add a frame (each waits for results or has ended), then runs
//! the model once and hands each frame its result. A stream that stalls
//! delays a batch by at most the budget; one that leaves only makes the
//! batches smaller.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{
    same_memory, Model, ModelConfig, InferError, LoadError, SessionStream, Thresholds,
};
use crate::meta::detections::FrameDetections;
use crate::tensor::{Tensor, TensorStorage};

static CAT: std::sync::LazyLock<gst::DebugCategory> = std::sync::LazyLock::new(|| {
    gst::DebugCategory::new(
        "trtinfer-batcher",
        gst::DebugColorFlags::empty(),
        Some("Batches of frames across trtinfer elements"),
    )
});

/// What makes elements share a batcher.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchKey {
    pub config: ModelConfig,
    pub group: String,
}

/// A frame's result, delivered once.
pub type Reply = mpsc::Receiver<Result<FrameDetections, InferError>>;

struct Job {
    tensor: Arc<Tensor>,
    /// The stream's thresholds when the frame was submitted.
    thresholds: Thresholds,
    queued: Instant,
    deadline: Instant,
    reply: mpsc::SyncSender<Result<FrameDetections, InferError>>,
}

impl Job {
    /// Tensors that can share one model run: same size, memory and GPU.
    fn fits_with(&self, other: &Job) -> bool {
        same_memory(&self.tensor, &other.tensor)
    }
}

/// Whether a member stream can still add frames to the forming batch.
#[derive(Default, Clone, Copy)]
struct MemberState {
    /// Waiting for results before it may submit more.
    waiting: bool,
    /// At end of stream: submits nothing until new data.
    ended: bool,
    /// Frames submitted lately: a count that decays with [`SHARE_DECAY`],
    /// as of `share_at`.
    share: f64,
    share_at: Option<Instant>,
}

/// Time constant of a member's recent share of the frames run.
const SHARE_DECAY: Duration = Duration::from_secs(2);
/// How long the group counts as overloaded after a stream skipped a frame
/// for it.
const OVERLOAD_HOLD: Duration = Duration::from_secs(1);

impl MemberState {
    /// The share decayed to `now`.
    fn share_now(&self, now: Instant) -> f64 {
        match self.share_at {
            Some(at) => {
                let elapsed = now.saturating_duration_since(at).as_secs_f64();
                self.share * (-elapsed / SHARE_DECAY.as_secs_f64()).exp()
            }
            None => 0.0,
        }
    }
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    members: HashMap<u64, MemberState>,
    next_member: u64,
    stop: bool,
    /// Until when the group counts as overloaded (a stream skipped a frame).
    overloaded_until: Option<Instant>,
}

impl Queue {
    /// No member can add a frame, so waiting for more is pointless.
    fn members_held(&self) -> bool {
        self.members.values().all(|m| m.waiting || m.ended)
    }
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    max_batch_size: usize,
    largest_batch: AtomicUsize,
    /// Model runs under way now, and the most at once so far (a pool's
    /// sessions overlap).
    running: AtomicUsize,
    most_running: AtomicUsize,
    /// How long the last runs took (model, decoding, NMS), newest last.
    recent_runs: Mutex<VecDeque<Duration>>,
    /// The longest of `recent_runs` in nanoseconds, kept once per batch:
    /// every element reads it for every frame.
    longest_recent_run: AtomicU64,
    /// Per batch, for the stage timings and the busy share, newest last.
    timings: Mutex<VecDeque<BatchRecord>>,
    /// Frames queued and not yet taken into a batch.
    queued: AtomicUsize,
}

/// One batch, as [`Batcher::timing`] and [`Batcher::busy`] read it.
#[derive(Clone, Copy)]
struct BatchRecord {
    /// The oldest job's wait from queued to the run's start.
    wait: Duration,
    run: Duration,
    size: usize,
    ended: Instant,
    /// The session's idle time before this run while a job was already
    /// waiting for it: what lies between two runs (gathering, releasing the
    /// frames, handing the results back).
    gap: Duration,
}

/// Batches remembered for [`Batcher::timing`].
const TIMED_BATCHES: usize = 1024;

/// Where a batch's frames spent their time, over the last batches.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchTiming {
    pub batches: usize,
    /// From a batch's oldest frame queued to the batch started.
    pub wait_p50: Duration,
    pub wait_p99: Duration,
    /// The model run with output decoding and NMS.
    pub run_p50: Duration,
    pub run_p99: Duration,
    /// Between a session's run and its next while a frame was waiting.
    pub gap_p50: Duration,
    pub gap_p99: Duration,
    pub mean_size: f64,
}

/// Runs remembered for the latency estimate.
const RECENT_RUNS: usize = 64;

pub struct Batcher {
    shared: Arc<Shared>,
    /// One per session of the pool.
    workers: Vec<JoinHandle<()>>,
    /// What the loaded model is, for the elements to show.
    pub info: ModelInfo,
}

/// Facts about the shared session.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub input_spec: crate::spec::InputSpec,
    pub active_provider: super::runtime::Provider,
    pub library: std::path::PathBuf,
    /// Frames per run: the smaller of what was asked and what the model
    /// takes.
    pub max_batch_size: usize,
    /// Sessions of the model that run batches at the same time.
    pub sessions: usize,
}

/// How a batcher is made (used when it is made; later elements of the key
/// share it as it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatcherOptions {
    pub max_batch_size: usize,
    /// The user asked for `max_batch_size` rather than the default.
    pub max_batch_size_set: bool,
    /// Sessions in the pool; 0: [`auto_sessions`] (see [`pool_sessions`]).
    pub sessions: usize,
}

/// Sessions of a pool when the user does not say: a model that takes one
/// frame per run cannot batch, so on a GPU several runs at once (each on
/// its own CUDA stream) keep the GPU busy; on the CPU one session already
/// uses every core.
pub const AUTO_GPU_SESSIONS: usize = 4;

pub fn auto_sessions(model_limit: usize, provider: super::runtime::Provider) -> usize {
    if model_limit == 1 && provider != super::runtime::Provider::Cpu {
        AUTO_GPU_SESSIONS
    } else {
        1
    }
}

/// Sessions of a pool: `asked`, or [`auto_sessions`] for 0. A session that
/// replays a CUDA graph (`cuda_graph`) is alone: ONNX Runtime captures in
/// CUDA's global mode, and on the H200 a pool of four made each other's
/// captures and runs fail ("operation not permitted when stream is
/// capturing"), even with the captures taken in turn; one session with a
/// graph ran right (GPU = CPU, 16 streams).
pub fn pool_sessions(
    asked: usize,
    model_limit: usize,
    provider: super::runtime::Provider,
    cuda_graph: bool,
) -> Result<usize, LoadError> {
    match asked {
        0 if cuda_graph => Ok(1),
        0 => Ok(auto_sessions(model_limit, provider)),
        n if cuda_graph && n > 1 => Err(LoadError::GraphPool { sessions: n }),
        n => Ok(n),
    }
}

/// The first session's stream. A stream of its own, so that its runs
/// neither wait behind the frames pre-processed meanwhile on the GPU's
/// shared stream nor make them wait (measured on the H100: 104 live
/// cameras kept up, where on the shared stream their frames waited 150 ms
/// for a batch); each run waits on the GPU for its own inputs. A session
/// that captures a CUDA graph stays on the shared stream, where its
/// captures were checked.
fn first_session_stream(config: &ModelConfig) -> SessionStream {
    if config.cuda.cuda_graph {
        SessionStream::Shared
    } else {
        SessionStream::Own
    }
}

/// One key's batcher, or where it is being made: elements of the same key
/// wait on the slot while the model loads; other keys are not held up (a
/// TensorRT engine build takes minutes).
type Slot = Arc<Mutex<Weak<Batcher>>>;

static BATCHERS: Mutex<Option<HashMap<BatchKey, Slot>>> = Mutex::new(None);

fn slot(key: &BatchKey) -> Slot {
    let mut guard = BATCHERS.lock().unwrap_or_else(|e| e.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    // Forget keys that nobody holds or loads (a loader holds a reference).
    map.retain(|_, slot| {
        Arc::strong_count(slot) > 1
            || slot
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .strong_count()
                > 0
    });
    map.entry(key.clone()).or_default().clone()
}

/// The batcher for `key`, made (loading the model) if no element holds one.
/// `max_batch_size` applies when it is made (`max_batch_size_set`: the user
/// asked for it, rather than the default); `warn` gets non-fatal problems.
pub fn shared(
    key: &BatchKey,
    options: BatcherOptions,
    mut warn: impl FnMut(&str),
) -> Result<Arc<Batcher>, LoadError> {
    let BatcherOptions {
        max_batch_size,
        max_batch_size_set,
        sessions,
    } = options;
    let slot = slot(key);
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(existing) = slot.upgrade() {
        // A default max-batch-size is no request: nothing to warn about.
        if max_batch_size_set && existing.info.max_batch_size != max_batch_size {
            warn(&format!(
                "this trtinfer shares the session of '{}' (batch-group '{}'), which batches up to {} frames; \
                 its max-batch-size={} is not used",
                key.config.model.display(),
                key.group,
                existing.info.max_batch_size,
                max_batch_size
            ));
        }
        if sessions != 0 && existing.info.sessions != sessions {
            warn(&format!(
                "this trtinfer shares the sessions of '{}' (batch-group '{}'), a pool of {}; its \
                 sessions={} is not used",
                key.config.model.display(),
                key.group,
                existing.info.sessions,
                sessions
            ));
        }
        return Ok(existing);
    }
    let mut detector = Model::load_on(&key.config, first_session_stream(&key.config), &mut warn)?;
    let model_limit = detector.max_batch();
    if model_limit < max_batch_size {
        let message = format!(
            "the model '{}' takes {} frame(s) per run (fixed batch dimension), so frames are not batched; \
             export it with a dynamic batch dimension to batch up to max-batch-size={}",
            key.config.model.display(),
            model_limit,
            max_batch_size
        );
        // Only a limit the user asked for is worth a warning: the default
        // one would warn on every run of a fixed-batch model.
        if max_batch_size_set {
            warn(&message);
        } else {
            gst::info!(CAT, "{}", message);
        }
    }
    let sessions = pool_sessions(
        sessions,
        model_limit,
        detector.active_provider(),
        detector.cuda_graph(),
    )?;
    let info = ModelInfo {
        input_spec: detector.input_spec().clone(),
        active_provider: detector.active_provider(),
        library: detector.library().to_path_buf(),
        max_batch_size: max_batch_size.min(model_limit).max(1),
        sessions,
    };
    detector
        .warm_up(info.max_batch_size)
        .map_err(LoadError::WarmUp)?;
    // The pool's other sessions, loaded at once (their warnings are the
    // first's), each on a CUDA stream of its own.
    let mut detectors = vec![detector];
    let others: Vec<Result<Model, LoadError>> = std::thread::scope(|scope| {
        let loads: Vec<_> = (1..sessions)
            .map(|_| {
                scope.spawn(|| {
                    let mut d = Model::load_on(&key.config, SessionStream::Own, |_| {})?;
                    d.warm_up(info.max_batch_size).map_err(LoadError::WarmUp)?;
                    Ok(d)
                })
            })
            .collect();
        loads
            .into_iter()
            .map(|l| l.join().expect("a model load does not panic"))
            .collect()
    });
    for d in others {
        detectors.push(d?);
    }
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue::default()),
        wake: Condvar::new(),
        max_batch_size: info.max_batch_size,
        largest_batch: AtomicUsize::new(0),
        running: AtomicUsize::new(0),
        most_running: AtomicUsize::new(0),
        recent_runs: Mutex::new(VecDeque::new()),
        longest_recent_run: AtomicU64::new(0),
        timings: Mutex::new(VecDeque::new()),
        queued: AtomicUsize::new(0),
    });
    let mut workers = Vec::with_capacity(detectors.len());
    for detector in detectors {
        let worker_shared = shared.clone();
        let worker = std::thread::Builder::new()
            .name("trtinfer-batch".into())
            .spawn(move || run_batches(detector, &worker_shared));
        match worker {
            Ok(w) => workers.push(w),
            Err(e) => {
                stop_workers(&shared, workers);
                return Err(LoadError::Thread(Arc::new(e)));
            }
        }
    }
    let batcher = Arc::new(Batcher {
        shared,
        workers,
        info,
    });
    *slot = Arc::downgrade(&batcher);
    Ok(batcher)
}

/// Stops the workers once the queue is empty and waits for them.
fn stop_workers(shared: &Shared, workers: Vec<JoinHandle<()>>) {
    shared.lock().stop = true;
    shared.wake.notify_all();
    for worker in workers {
        let _ = worker.join();
    }
}

/// A stream's place in a batcher: what the batcher knows of whether the
/// stream can add frames. Leaves the batcher when dropped.
pub struct Membership {
    shared: Arc<Shared>,
    id: u64,
}

impl Membership {
    fn update(&self, change: impl FnOnce(&mut MemberState)) {
        let mut queue = self.shared.lock();
        if let Some(state) = queue.members.get_mut(&self.id) {
            change(state);
        }
        self.shared.wake.notify_one();
    }

    /// The stream waits for results before it submits again.
    pub fn set_waiting(&self, waiting: bool) {
        self.update(|m| m.waiting = waiting);
    }

    /// The stream reached its end (or starts again).
    pub fn set_ended(&self, ended: bool) {
        self.update(|m| m.ended = ended);
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.shared.lock().members.remove(&self.id);
        self.shared.wake.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Batcher {
    /// Registers a stream that will submit frames.
    pub fn join(&self) -> Membership {
        let mut queue = self.shared.lock();
        let id = queue.next_member;
        queue.next_member += 1;
        queue.members.insert(id, MemberState::default());
        Membership {
            shared: self.shared.clone(),
            id,
        }
    }

    /// Queues one frame's tensor from `member`'s stream; its result arrives
    /// on the returned receiver at most about `budget` plus one model run
    /// later.
    pub fn submit(
        &self,
        member: &Membership,
        tensor: Arc<Tensor>,
        thresholds: Thresholds,
        budget: Duration,
    ) -> Reply {
        let (reply, receiver) = mpsc::sync_channel(1);
        let queued = Instant::now();
        let job = Job {
            tensor,
            thresholds,
            queued,
            deadline: queued + budget,
            reply,
        };
        let mut queue = self.shared.lock();
        queue.jobs.push_back(job);
        self.shared.queued.store(queue.jobs.len(), Ordering::Relaxed);
        if let Some(state) = queue.members.get_mut(&member.id) {
            state.ended = false;
            state.share = state.share_now(queued) + 1.0;
            state.share_at = Some(queued);
        }
        self.shared.wake.notify_one();
        receiver
    }

    /// The longest of the recent batch runs (zero before the first): what a
    /// frame waits for its result once its batch has formed.
    pub fn batch_time(&self) -> Duration {
        Duration::from_nanos(self.shared.longest_recent_run.load(Ordering::Relaxed))
    }

    /// Frames queued and not yet in a batch.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// When a frame queued now would have its result, about: the runs under
    /// way when every session is busy, the batches queued ahead of it and
    /// its own, each a recent longest run, over the sessions that run them
    /// side by side. Zero before the first run.
    pub fn expected_wait(&self) -> Duration {
        let batch = self.info.max_batch_size.max(1);
        let sessions = self.info.sessions.max(1);
        let busy = self.shared.running.load(Ordering::Relaxed) >= sessions;
        let batches = self.queued() / batch + 1 + usize::from(busy);
        self.batch_time() * batches.div_ceil(sessions) as u32
    }

    /// A stream of the group passed a frame on uninferred for overload:
    /// the group counts as overloaded for a while (see [`Self::above_share`]).
    pub fn note_overload(&self) {
        self.shared.lock().overloaded_until = Some(Instant::now() + OVERLOAD_HOLD);
    }

    /// While the group is overloaded, whether `member` has lately had more
    /// frames run than the group's streams on average (by a tenth): such a
    /// stream yields its next frame to the others, so that every stream
    /// degrades evenly rather than the ones whose frames happen to come
    /// just after a batch starts.
    pub fn above_share(&self, member: &Membership) -> bool {
        let queue = self.shared.lock();
        let now = Instant::now();
        if queue.overloaded_until.is_none_or(|until| now >= until) {
            return false;
        }
        let active: Vec<f64> = queue
            .members
            .values()
            .filter(|m| !m.ended)
            .map(|m| m.share_now(now))
            .collect();
        if active.len() < 2 {
            return false;
        }
        let mean = active.iter().sum::<f64>() / active.len() as f64;
        queue
            .members
            .get(&member.id)
            .is_some_and(|m| m.share_now(now) > mean * 1.1)
    }

    /// The share of the last `window` the group's sessions spent running
    /// batches (0 idle, 1 every session always busy): what is left is the
    /// headroom for more streams.
    pub fn busy(&self, window: Duration) -> f64 {
        let timings = self
            .shared
            .timings
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let since = now.checked_sub(window).unwrap_or(now);
        let running: f64 = timings
            .iter()
            .rev()
            .take_while(|t| t.ended > since)
            .map(|t| {
                let started = t.ended.checked_sub(t.run).unwrap_or(t.ended);
                t.ended.duration_since(started.max(since)).as_secs_f64()
            })
            .sum();
        (running / (window.as_secs_f64() * self.info.sessions.max(1) as f64)).min(1.0)
    }

    /// Waits and runs of the last batches (percentiles), for benchmarks.
    pub fn timing(&self) -> BatchTiming {
        let timings = self
            .shared
            .timings
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if timings.is_empty() {
            return BatchTiming::default();
        }
        let pick = |f: fn(&BatchRecord) -> Duration| {
            let mut v: Vec<Duration> = timings.iter().map(f).collect();
            v.sort();
            let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
            (at(0.5), at(0.99))
        };
        let (wait_p50, wait_p99) = pick(|t| t.wait);
        let (run_p50, run_p99) = pick(|t| t.run);
        let (gap_p50, gap_p99) = pick(|t| t.gap);
        BatchTiming {
            batches: timings.len(),
            wait_p50,
            wait_p99,
            run_p50,
            run_p99,
            gap_p50,
            gap_p99,
            mean_size: timings.iter().map(|t| t.size).sum::<usize>() as f64 / timings.len() as f64,
        }
    }

    /// The most frames run at once so far.
    pub fn largest_batch(&self) -> usize {
        self.shared.largest_batch.load(Ordering::Relaxed)
    }

    /// The most model runs under way at once so far (sessions of the pool).
    pub fn most_concurrent_runs(&self) -> usize {
        self.shared.most_running.load(Ordering::Relaxed)
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        stop_workers(&self.shared, std::mem::take(&mut self.workers));
    }
}

/// The next batch: waits for a first job, then until the batch is full,
/// the earliest deadline among the jobs that fit with it has passed, or no
/// member can add a frame. `None` once stopped and empty.
fn next_batch(shared: &Shared) -> Option<Vec<Job>> {
    let mut queue = shared.lock();
    loop {
        if queue.jobs.is_empty() {
            if queue.stop {
                return None;
            }
            queue = shared.wake.wait(queue).unwrap_or_else(|e| e.into_inner());
            continue;
        }
        let first = &queue.jobs[0];
        let fitting: Vec<usize> = (0..queue.jobs.len())
            .filter(|&i| queue.jobs[i].fits_with(first))
            .take(shared.max_batch_size)
            .collect();
        let deadline = fitting
            .iter()
            .map(|&i| queue.jobs[i].deadline)
            .min()
            .expect("the first job fits with itself");
        let now = Instant::now();
        if fitting.len() >= shared.max_batch_size
            || now >= deadline
            || queue.members_held()
            || queue.stop
        {
            let mut batch = Vec::with_capacity(fitting.len());
            for (taken, i) in fitting.into_iter().enumerate() {
                batch.push(queue.jobs.remove(i - taken).expect("index in range"));
            }
            shared.queued.store(queue.jobs.len(), Ordering::Relaxed);
            return Some(batch);
        }
        queue = shared
            .wake
            .wait_timeout(queue, deadline - now)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

fn run_batches(mut detector: Model, shared: &Shared) {
    let mut last_end: Option<Instant> = None;
    while let Some(batch) = next_batch(shared) {
        let size = batch.len();
        shared.largest_batch.fetch_max(size, Ordering::Relaxed);
        let waited = batch.iter().map(|j| j.queued.elapsed()).max();
        let started = Instant::now();
        // Idle time while the batch's oldest frame was already queued.
        let oldest = batch.iter().map(|j| j.queued).min();
        let gap = match (last_end, oldest) {
            (Some(end), Some(queued)) => started.saturating_duration_since(end.max(queued)),
            _ => Duration::ZERO,
        };
        let thresholds: Vec<Thresholds> = batch.iter().map(|j| j.thresholds).collect();
        let (tensors, replies): (Vec<Arc<Tensor>>, Vec<_>) =
            batch.into_iter().map(|j| (j.tensor, j.reply)).unzip();
        let views: Vec<&Tensor> = tensors.iter().map(Arc::as_ref).collect();
        let now_running = shared.running.fetch_add(1, Ordering::Relaxed) + 1;
        shared
            .most_running
            .fetch_max(now_running, Ordering::Relaxed);
        let results = detector.run_batch(&views, &thresholds);
        shared.running.fetch_sub(1, Ordering::Relaxed);
        // Unmap the frames now rather than when the tensors' last holder
        // (a buffer's meta, downstream) drops them: their kernels ran before
        // the batch, whose decoding synchronised the stream, so this does
        // not wait.
        for tensor in &tensors {
            if let TensorStorage::Device(d) = &tensor.storage {
                if let Err(e) = d.release_source() {
                    gst::warning!(CAT, "cannot release a frame after inference: {e}");
                }
            }
        }
        // Our references go before the frames do: a frame that comes back
        // to its decoder's pool while a tensor still maps its memory is
        // thrown away, and the decoder allocates a new one.
        drop(views);
        drop(tensors);
        let run = started.elapsed();
        {
            let mut runs = shared.recent_runs.lock().unwrap_or_else(|e| e.into_inner());
            if runs.len() == RECENT_RUNS {
                runs.pop_front();
            }
            runs.push_back(run);
            let longest = runs.iter().copied().max().unwrap_or_default();
            shared
                .longest_recent_run
                .store(longest.as_nanos() as u64, Ordering::Relaxed);
        }
        {
            let mut timings = shared.timings.lock().unwrap_or_else(|e| e.into_inner());
            if timings.len() == TIMED_BATCHES {
                timings.pop_front();
            }
            timings.push_back(BatchRecord {
                wait: waited.unwrap_or_default(),
                run,
                size,
                ended: Instant::now(),
                gap,
            });
        }
        gst::debug!(
            CAT,
            "batch of {size}: oldest frame queued {:?}, run {:?}",
            waited.unwrap_or_default(),
            run
        );
        for (reply, result) in replies.into_iter().zip(results) {
            // A stream that flushed or stopped no longer listens.
            let _ = reply.send(result);
        }
        last_end = Some(started + run);
    }
}

#[cfg(test)]
mod tests {
    use super::super::runtime::Provider;
    use super::*;

    #[test]
    fn pool_sessions_keeps_a_graph_alone() {
        // Without a graph: what was asked, or 4 for a batch-1 model on a GPU.
        assert_eq!(pool_sessions(0, 1, Provider::Cuda, false).unwrap(), 4);
        assert_eq!(pool_sessions(0, 32, Provider::Cuda, false).unwrap(), 1);
        assert_eq!(pool_sessions(0, 1, Provider::Cpu, false).unwrap(), 1);
        assert_eq!(pool_sessions(3, 1, Provider::Cuda, false).unwrap(), 3);
        // With one: the automatic pool is one session, one asked is fine.
        assert_eq!(pool_sessions(0, 1, Provider::Cuda, true).unwrap(), 1);
        assert_eq!(pool_sessions(1, 1, Provider::Cuda, true).unwrap(), 1);
        // More than one is refused, saying what to set.
        let e = pool_sessions(4, 1, Provider::Cuda, true).unwrap_err();
        assert!(matches!(e, LoadError::GraphPool { sessions: 4 }));
        let message = e.to_string();
        assert!(
            message.starts_with("cuda-graph=true with sessions=4")
                && message.contains("set sessions=1")
                && message.contains("or cuda-graph=false"),
            "{message}"
        );
    }
}
