//! Which rule decides a repository, remembered: for policies with many
//! patterns that start with a wildcard, which the index tries for every
//! repository. Keyed by repository only: once the rule is known, the user
//! and the action cost one hash lookup and a bit test, so a key of (user,
//! repository, action) would only multiply the entries.
//!
//! Bounded and sharded like the credential cache; a full shard is emptied
//! rather than scanned (clients can name any number of repositories). Each
//! snapshot has its own, so a reload starts afresh.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::RwLock;

const SHARDS: usize = 16;

/// Entries per policy, all shards together.
pub const MAX_ENTRIES: usize = 16_384;

#[derive(Debug)]
pub struct RuleCache {
    hasher: RandomState,
    per_shard: usize,
    shards: [RwLock<HashMap<Box<str>, Option<u32>>>; SHARDS],
}

impl Default for RuleCache {
    fn default() -> Self {
        RuleCache::new(MAX_ENTRIES)
    }
}

impl RuleCache {
    pub fn new(max_entries: usize) -> RuleCache {
        RuleCache {
            hasher: RandomState::new(),
            per_shard: max_entries.div_ceil(SHARDS).max(1),
            shards: std::array::from_fn(|_| RwLock::new(HashMap::new())),
        }
    }

    fn shard(&self, repository: &str) -> &RwLock<HashMap<Box<str>, Option<u32>>> {
        &self.shards[self.hasher.hash_one(repository) as usize % SHARDS]
    }

    /// `Some(rule)` when known (`Some(None)`: no rule matches).
    pub fn get(&self, repository: &str) -> Option<Option<u32>> {
        let shard = self.shard(repository).read().unwrap_or_else(|e| e.into_inner());
        shard.get(repository).copied()
    }

    pub fn insert(&self, repository: &str, rule: Option<u32>) {
        let mut shard = self.shard(repository).write().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= self.per_shard {
            shard.clear();
        }
        shard.insert(repository.into(), rule);
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_and_stays_bounded() {
        let c = RuleCache::new(64);
        assert_eq!(c.get("a"), None);
        c.insert("a", Some(3));
        c.insert("b", None);
        assert_eq!(c.get("a"), Some(Some(3)));
        assert_eq!(c.get("b"), Some(None));
        for i in 0..10_000 {
            c.insert(&format!("repo-{i}"), Some(1));
        }
        assert!(c.len() <= 64, "{}", c.len());
    }
}
