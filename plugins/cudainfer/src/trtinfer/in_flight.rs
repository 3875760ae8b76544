//! Frames in flight: a stream's frames wait for their results here, at most
//! `max` of them, while the streaming thread goes on to the next frame; one
//! thread per element hands the results downstream in the frames' order as
//! soon as each is ready, so a stream never holds a finished frame back
//! waiting for its next input (a stalled or prerolling stream included).
//!
//! Flushing seeks: every queued frame carries the flush generation it was
//! submitted in. A flush start begins a new generation, so a frame (or the
//! flow its push returned) from before the flush is dropped even when its
//! result arrives after the flush stop; and the flush stop waits for a push
//! already under way, so nothing from before the seek follows the new
//! segment downstream.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::inference::batcher::Reply;
use crate::inference::InferError;
use crate::meta::detections::FrameDetections;

/// Attaches a frame's result and pushes it downstream.
pub type Deliver = Box<
    dyn Fn(gst::Buffer, Result<Outcome, InferError>) -> Result<gst::FlowSuccess, gst::FlowError>
        + Send,
>;

/// What a frame waits for: the result of its tensor, or of each of its
/// objects' crops (`cudapreprocess mode=objects`; none when it had none).
pub enum Pending {
    Frame(Reply),
    Objects(Vec<(usize, Reply)>),
    /// A frame not inferred (`interval`, overload): its result is known, it
    /// only keeps its place in the stream's order.
    Ready(FrameDetections),
}

/// A frame's result: the frame's, or each object's by its index in the
/// frame's detections.
pub enum Outcome {
    Frame(FrameDetections),
    Objects(Vec<(usize, FrameDetections)>),
}

impl Pending {
    fn wait(self) -> Result<Outcome, InferError> {
        let receive = |reply: Reply| reply.recv().unwrap_or(Err(InferError::BatcherStopped));
        match self {
            Pending::Frame(reply) => receive(reply).map(Outcome::Frame),
            Pending::Objects(replies) => replies
                .into_iter()
                .map(|(object, reply)| receive(reply).map(|r| (object, r)))
                .collect::<Result<_, _>>()
                .map(Outcome::Objects),
            Pending::Ready(result) => Ok(Outcome::Frame(result)),
        }
    }

    fn infers(&self) -> bool {
        !matches!(self, Pending::Ready(_))
    }
}

struct Queued {
    buffer: gst::Buffer,
    reply: Pending,
    generation: u64,
}

struct Queue {
    frames: VecDeque<Queued>,
    /// A frame taken from `frames` is waiting for its result or being
    /// delivered.
    busy: bool,
    /// ... and that frame is being inferred (not a skipped one).
    busy_inferring: bool,
    /// A frame is being pushed downstream (outside the lock).
    pushing: bool,
    flushing: bool,
    /// Counts flush starts; frames of an older generation are stale.
    generation: u64,
    stop: bool,
    /// The last downstream flow; an error is returned to upstream.
    flow: Result<gst::FlowSuccess, gst::FlowError>,
}

struct Shared {
    queue: Mutex<Queue>,
    changed: Condvar,
    max: usize,
}

/// Told when the stream starts (true) and stops (false) waiting for room,
/// so the batcher need not wait for frames that cannot come.
pub type Waiting = Box<dyn Fn(bool) + Send + Sync>;

pub struct InFlight {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    waiting: Waiting,
}

impl InFlight {
    pub fn start(max: usize, deliver: Deliver, waiting: Waiting) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                frames: VecDeque::new(),
                busy: false,
                busy_inferring: false,
                pushing: false,
                flushing: false,
                generation: 0,
                stop: false,
                flow: Ok(gst::FlowSuccess::Ok),
            }),
            changed: Condvar::new(),
            max: max.max(1),
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("trtinfer-out".into())
            .spawn(move || deliver_in_order(&worker, deliver))
            .expect("a thread can be started");
        Self {
            shared,
            thread: Some(thread),
            waiting,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.shared.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame whose result(s) will arrive on `reply`; waits while the
    /// stream has its maximum in flight. Returns downstream's last error.
    pub fn submit(
        &self,
        buffer: gst::Buffer,
        reply: Pending,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let max = self.shared.max;
        let mut q = self.wait_while(|q| q.frames.len() + q.busy as usize >= max);
        if q.flushing {
            return Err(gst::FlowError::Flushing);
        }
        q.flow?;
        let generation = q.generation;
        q.frames.push_back(Queued {
            buffer,
            reply,
            generation,
        });
        self.shared.changed.notify_all();
        Ok(gst::FlowSuccess::Ok)
    }

    /// Whether a frame of the stream is being inferred now: an overload
    /// skip keeps at least one in progress, so that a stream whose every
    /// run is over the budget still gets results.
    pub fn inferring(&self) -> bool {
        let q = self.lock();
        q.busy_inferring || q.frames.iter().any(|f| f.reply.infers())
    }

    /// Waits until every queued frame has been pushed (before an event that
    /// must follow them). Returns downstream's last error.
    pub fn drain(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.wait_while(|q| !q.frames.is_empty() || q.busy).flow
    }

    /// Waits while `blocked` holds (and there is no flush or error), telling
    /// the batcher that this stream cannot submit meanwhile.
    fn wait_while(&self, blocked: impl Fn(&Queue) -> bool) -> std::sync::MutexGuard<'_, Queue> {
        let mut q = self.lock();
        if blocked(&q) {
            (self.waiting)(true);
            while blocked(&q) && !q.flushing && q.flow.is_ok() {
                q = self
                    .shared
                    .changed
                    .wait(q)
                    .unwrap_or_else(|e| e.into_inner());
            }
            (self.waiting)(false);
        }
        q
    }

    /// Flush start drops the queued frames, starts a new generation and
    /// wakes every waiter. Flush stop first waits for a push under way (it
    /// returns promptly: downstream is flushing), then lets frames in again.
    pub fn set_flushing(&self, flushing: bool) {
        let mut q = self.lock();
        if flushing {
            q.generation += 1;
            q.flow = Err(gst::FlowError::Flushing);
        } else {
            while q.pushing {
                q = self
                    .shared
                    .changed
                    .wait(q)
                    .unwrap_or_else(|e| e.into_inner());
            }
            q.flow = Ok(gst::FlowSuccess::Ok);
        }
        q.flushing = flushing;
        q.frames.clear();
        self.shared.changed.notify_all();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        {
            let mut q = self.lock();
            q.stop = true;
            q.frames.clear();
        }
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn deliver_in_order(shared: &Shared, deliver: Deliver) {
    loop {
        let Queued {
            buffer,
            reply,
            generation,
        } = {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if q.stop {
                    return;
                }
                if let Some(front) = q.frames.pop_front() {
                    q.busy = true;
                    q.busy_inferring = front.reply.infers();
                    break front;
                }
                q = shared.changed.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        let result = reply.wait();
        let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        // A flush (now or since the frame was queued) or a stop while we
        // waited drops the frame.
        if !q.flushing && !q.stop && q.generation == generation {
            q.pushing = true;
            drop(q);
            let flow = deliver(buffer, result);
            q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.pushing = false;
            // A push that a flush interrupted returns FLUSHING; that flow
            // belongs to the old generation and must not fail the next frame.
            if !q.flushing && q.generation == generation {
                q.flow = flow;
            }
        }
        q.busy = false;
        q.busy_inferring = false;
        shared.changed.notify_all();
    }
}
