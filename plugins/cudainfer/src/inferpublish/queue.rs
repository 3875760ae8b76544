//! The bounded queue between the video thread and the MQTT thread: pushing
//! never waits; when full, the oldest message goes.

use std::collections::VecDeque;

pub struct DropOldest {
    items: VecDeque<Vec<u8>>,
    capacity: usize,
}

impl DropOldest {
    pub fn new(capacity: usize) -> Self {
        DropOldest {
            items: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Appends `item`; true if the oldest message was dropped to make room.
    pub fn push(&mut self, item: Vec<u8>) -> bool {
        let dropped = self.items.len() >= self.capacity && self.items.pop_front().is_some();
        self.items.push_back(item);
        dropped
    }

    /// Puts back a message that could not be delivered, ahead of the
    /// others; false (and the message is dropped) if the queue is full,
    /// since it is then the oldest of all.
    pub fn push_front(&mut self, item: Vec<u8>) -> bool {
        if self.items.len() >= self.capacity {
            return false;
        }
        self.items.push_front(item);
        true
    }

    pub fn pop(&mut self) -> Option<Vec<u8>> {
        self.items.pop_front()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_the_oldest_when_full() {
        let mut q = DropOldest::new(3);
        let dropped: Vec<bool> = (0u8..5).map(|i| q.push(vec![i])).collect();
        assert_eq!(dropped, [false, false, false, true, true]);
        assert!(
            !q.push_front(vec![9]),
            "a full queue refuses the returned message"
        );
        assert_eq!(q.pop(), Some(vec![2]));
        assert!(q.push_front(vec![1]));
        let rest: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(rest, [vec![1], vec![3], vec![4]]);
        assert_eq!(q.len(), 0);
    }
}
