//! Mutexes that outlive a panic: the service's shared state (the camera
//! set, a camera's control and counters) stays usable when one thread
//! panics while holding it, so one camera's fault never stops the others or
//! the API.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub trait Locked<T> {
    /// The guard, also when a panicking thread held the lock last (the data
    /// guarded here is whole after every statement that changes it).
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
