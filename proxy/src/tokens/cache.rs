//! Counts of input texts seen recently, so a conversation's history is not tokenized again
//! on every turn.
//!
//! Chat clients resend the whole conversation with each request: on turn N, all but the
//! newest message were already counted on turn N−1. [`CountCache`] remembers the count of
//! each input text of at least [`MIN_CACHED_BYTES`] bytes.
//!
//! * **Exact.** An entry is used only when its stored text equals the text being counted,
//!   byte for byte (after a hash lookup; a hash collision is a miss, never a wrong count).
//! * **Bounded.** Text bytes held stay below `TOKEN_COUNT_CACHE_BYTES`: the cache has two
//!   generations per shard; when the current one reaches half the shard's budget the older
//!   one is dropped and the current becomes the older (an approximate LRU: an entry found in
//!   the older generation moves back to the current one).
//! * **Cheap.** A hit costs a hash and a comparison (GB/s); counting costs ~300 µs per
//!   40 KB. Shards keep concurrent requests from waiting on one lock.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rustc_hash::FxHasher;

/// Texts shorter than this are counted every time (a few microseconds at most).
pub const MIN_CACHED_BYTES: usize = 512;

const SHARDS: usize = 16;

type Hasher = BuildHasherDefault<FxHasher>;

#[derive(Default)]
struct Generation {
    entries: HashMap<u64, (Box<str>, usize), Hasher>,
    bytes: usize,
}

#[derive(Default)]
struct Shard {
    current: Generation,
    previous: Generation,
}

/// Hits and misses since start (for tests and the debug log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Counts answered from the cache.
    pub hits: u64,
    /// Cacheable texts that had to be counted.
    pub misses: u64,
}

/// A bounded, exact cache of token counts keyed by text.
pub struct CountCache {
    shards: Vec<Mutex<Shard>>,
    /// Bytes one generation of one shard may hold.
    generation_budget: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for CountCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountCache")
            .field("budget", &(self.generation_budget * 2 * SHARDS))
            .field("stats", &self.stats())
            .finish()
    }
}

impl CountCache {
    /// A cache holding at most `budget` bytes of text; `None` when `budget` is 0 (off) or too
    /// small to hold one text per shard.
    pub fn new(budget: usize) -> Option<Self> {
        let generation_budget = budget / SHARDS / 2;
        (generation_budget >= MIN_CACHED_BYTES).then(|| Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            generation_budget,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// The count of `text`: from the cache, or from `count` (then remembered).
    pub fn count(&self, text: &str, count: impl FnOnce(&str) -> usize) -> usize {
        if text.len() < MIN_CACHED_BYTES || text.len() > self.generation_budget {
            return count(text);
        }
        self.count_keyed(Hasher::default().hash_one(text.as_bytes()), text, count)
    }

    fn count_keyed(&self, key: u64, text: &str, count: impl FnOnce(&str) -> usize) -> usize {
        let shard = &self.shards[(key as usize) % SHARDS];
        if let Some(tokens) = lock(shard).get(key, text, self.generation_budget) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return tokens;
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        // Counted outside the lock: other texts of this shard are not held up.
        let tokens = count(text);
        lock(shard).put(key, text.into(), tokens, self.generation_budget);
        tokens
    }

    /// Hits and misses so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// Text bytes held now (at most the budget given to [`CountCache::new`]).
    pub fn held_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = lock(s);
                s.current.bytes + s.previous.bytes
            })
            .sum()
    }
}

/// A poisoned shard only means a panic elsewhere while it was held; its data is still valid.
fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    shard
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shard {
    fn get(&mut self, key: u64, text: &str, budget: usize) -> Option<usize> {
        if let Some((stored, tokens)) = self.current.entries.get(&key) {
            return (**stored == *text).then_some(*tokens);
        }
        match self.previous.entries.get(&key) {
            Some((stored, _)) if **stored == *text => {}
            _ => return None,
        }
        // Still in use: move it to the current generation (through `put`, which keeps the
        // current generation within its budget).
        let (stored, tokens) = self.previous.entries.remove(&key)?;
        self.previous.bytes -= stored.len();
        self.put(key, stored, tokens, budget);
        Some(tokens)
    }

    /// Adds an entry to the current generation, first turning it into the older one when
    /// the entry would not fit: each generation stays within `budget`.
    fn put(&mut self, key: u64, text: Box<str>, tokens: usize, budget: usize) {
        if self.current.bytes + text.len() > budget {
            self.previous = std::mem::take(&mut self.current);
        }
        if let Some((old, _)) = self.previous.entries.remove(&key) {
            self.previous.bytes -= old.len();
        }
        let len = text.len();
        if let Some((old, _)) = self.current.entries.insert(key, (text, tokens)) {
            self.current.bytes -= old.len();
        }
        self.current.bytes += len;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn text(seed: usize) -> String {
        format!("message {seed}: {}", "lorem ipsum dolor ".repeat(40))
    }

    #[test]
    fn a_text_is_counted_once_then_answered_from_the_cache() {
        let cache = CountCache::new(1 << 20).expect("cache");
        let calls = Cell::new(0);
        let count = |t: &str| {
            calls.set(calls.get() + 1);
            t.len()
        };
        let t = text(1);
        assert_eq!(cache.count(&t, count), t.len());
        assert_eq!(cache.count(&t, count), t.len());
        assert_eq!(cache.count(&t.clone(), count), t.len());
        assert_eq!(calls.get(), 1);
        assert_eq!(cache.stats(), CacheStats { hits: 2, misses: 1 });
        // Short texts are never cached.
        assert_eq!(cache.count("hi", count), 2);
        assert_eq!(cache.count("hi", count), 2);
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn a_hash_collision_is_a_miss_never_a_wrong_count() {
        let cache = CountCache::new(1 << 20).expect("cache");
        let (a, b) = (text(1), text(2));
        assert_eq!(cache.count_keyed(7, &a, |_| 111), 111);
        assert_eq!(cache.count_keyed(7, &b, |_| 222), 222);
        assert_eq!(cache.count_keyed(7, &b, |_| 0), 222);
        assert_eq!(cache.count_keyed(7, &a, |_| 111), 111);
    }

    #[test]
    fn held_bytes_stay_within_the_budget_and_recent_texts_survive() {
        let budget = 64 * 1024;
        let cache = CountCache::new(budget).expect("cache");
        for i in 0..2_000 {
            cache.count(&text(i), str::len);
            // One text is used on every round, like the system prompt.
            cache.count(&text(usize::MAX), str::len);
            assert!(cache.held_bytes() <= budget, "{} bytes", cache.held_bytes());
        }
        let before = cache.stats();
        cache.count(&text(usize::MAX), |_| unreachable!("kept while in use"));
        assert_eq!(cache.stats().hits, before.hits + 1);
    }

    #[test]
    fn moving_entries_back_keeps_each_generation_within_its_budget() {
        let budget = 8 * 1024;
        let mut shard = Shard::default();
        let texts: Vec<String> = (0..40).map(text).collect();
        for (key, t) in (0u64..).zip(&texts) {
            shard.put(key, t.as_str().into(), 1, budget);
        }
        // Both generations are full; read back everything the older one holds.
        let older: Vec<u64> = shard.previous.entries.keys().copied().collect();
        assert!(!older.is_empty());
        let mut moved = 0;
        for key in older {
            let t = &texts[usize::try_from(key).expect("small")];
            // Moving one back may fill the current generation and drop the older one, so
            // later reads can miss; none may overflow.
            moved += usize::from(shard.get(key, t, budget) == Some(1));
            assert!(
                shard.current.bytes <= budget,
                "current {}",
                shard.current.bytes
            );
        }
        assert!(moved > 0);
        shard.put(99, text(99).into(), 1, budget);
        assert!(shard.current.bytes <= budget && shard.previous.bytes <= budget);
    }

    #[test]
    fn zero_or_tiny_budgets_turn_the_cache_off() {
        assert!(CountCache::new(0).is_none());
        assert!(CountCache::new(1000).is_none());
        assert!(CountCache::new(crate::config::DEFAULT_TOKEN_COUNT_CACHE_BYTES).is_some());
    }
}
