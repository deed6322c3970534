//! [`KeyedQueue`]: one record at a time per ordering key.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Serialises the records of each ordering key in arrival order, while records of
/// different keys run side by side.
///
/// [`admit`](Self::admit) hands a record back to run now if nothing of its key is running,
/// or holds it; [`finish`](Self::finish) ends the running record of a key and hands back
/// the next one held for it. Every operation is O(1) but
/// [`remove_held`](Self::remove_held).
#[derive(Debug)]
pub struct KeyedQueue<K, T> {
    /// A key is present while one of its records runs; its queue holds the ones waiting.
    keys: HashMap<K, VecDeque<T>>,
    held: usize,
}

impl<K, T> Default for KeyedQueue<K, T> {
    fn default() -> Self {
        Self {
            keys: HashMap::new(),
            held: 0,
        }
    }
}

impl<K: Eq + Hash, T> KeyedQueue<K, T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns `item` to run now if nothing of `key` is running (it is then running), or
    /// holds it behind the records of `key` that came before it and returns `None`.
    pub fn admit(&mut self, key: K, item: T) -> Option<T> {
        match self.keys.entry(key) {
            Entry::Occupied(mut waiting) => {
                waiting.get_mut().push_back(item);
                self.held += 1;
                None
            }
            Entry::Vacant(slot) => {
                slot.insert(VecDeque::new());
                Some(item)
            }
        }
    }

    /// Ends the running record of `key` and returns the next one held for it, which is now
    /// running; `None` when none is held (then nothing of `key` runs), also for a key with
    /// nothing running.
    pub fn finish(&mut self, key: &K) -> Option<T> {
        let waiting = self.keys.get_mut(key)?;
        match waiting.pop_front() {
            Some(next) => {
                self.held -= 1;
                Some(next)
            }
            None => {
                self.keys.remove(key);
                None
            }
        }
    }

    /// Whether a record of `key` is running.
    pub fn is_running(&self, key: &K) -> bool {
        self.keys.contains_key(key)
    }

    /// How many keys have a record running.
    pub fn running(&self) -> usize {
        self.keys.len()
    }

    /// How many records are held, over all keys.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Takes out the held records for which `drop` is true (those of a revoked partition,
    /// say), keeping the others in order; running records are not touched. The records
    /// taken out come in arrival order within a key, in no set order across keys.
    pub fn remove_held(&mut self, mut drop: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut removed = Vec::new();
        for waiting in self.keys.values_mut() {
            let mut kept = VecDeque::with_capacity(waiting.len());
            for item in waiting.drain(..) {
                if drop(&item) {
                    removed.push(item);
                } else {
                    kept.push_back(item);
                }
            }
            *waiting = kept;
        }
        self.held -= removed.len();
        removed
    }
}
