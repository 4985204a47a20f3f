//! Logins already verified, so a client resending its Basic credentials on
//! every request costs a hash lookup instead of a bcrypt run.
//!
//! Keyed by SHA-256 over a per-process random secret and the credential:
//! the plain password is never stored, and the keys are useless outside
//! this process. Sharded so concurrent readers do not share one lock.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub type CredentialKey = [u8; 32];

const SHARDS: usize = 16;

#[derive(Debug, Clone)]
struct Entry {
    user: Arc<str>,
    generation: u64,
    expires: Instant,
}

#[derive(Debug)]
pub struct CredentialCache {
    secret: [u8; 32],
    ttl: Duration,
    per_shard: usize,
    shards: [RwLock<HashMap<CredentialKey, Entry>>; SHARDS],
}

impl CredentialCache {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("the OS random source is available");
        CredentialCache {
            secret,
            ttl,
            per_shard: max_entries.div_ceil(SHARDS).max(1),
            shards: std::array::from_fn(|_| RwLock::new(HashMap::new())),
        }
    }

    /// The cache key of a credential as presented for one user table.
    pub fn key(&self, table_id: u64, credential: &[u8]) -> CredentialKey {
        Sha256::new()
            .chain_update(self.secret)
            .chain_update(table_id.to_le_bytes())
            .chain_update(credential)
            .finalize()
            .into()
    }

    fn shard(&self, key: &CredentialKey) -> &RwLock<HashMap<CredentialKey, Entry>> {
        &self.shards[key[0] as usize % SHARDS]
    }

    /// The user of a still-valid login verified against `generation`.
    pub fn get(&self, key: &CredentialKey, generation: u64) -> Option<Arc<str>> {
        let shard = self.shard(key).read().unwrap_or_else(|e| e.into_inner());
        let e = shard.get(key)?;
        (e.generation == generation && e.expires > Instant::now()).then(|| e.user.clone())
    }

    pub fn insert(&self, key: CredentialKey, user: Arc<str>, generation: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut shard = self.shard(&key).write().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= self.per_shard {
            shard.retain(|_, e| e.expires > now && e.generation == generation);
            if shard.len() >= self.per_shard {
                // Still full of live logins: drop one, any one.
                if let Some(k) = shard.keys().next().copied() {
                    shard.remove(&k);
                }
            }
        }
        shard.insert(
            key,
            Entry {
                user,
                generation,
                expires: now + self.ttl,
            },
        );
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
    fn hits_expire_and_respect_generation() {
        let c = CredentialCache::new(Duration::from_secs(60), 100);
        let k = c.key(1, b"Basic dTpw");
        assert_ne!(k, c.key(2, b"Basic dTpw"), "tables do not share logins");
        assert_eq!(c.get(&k, 1), None);
        c.insert(k, "u".into(), 1);
        assert_eq!(c.get(&k, 1).as_deref(), Some("u"));
        assert_eq!(c.get(&k, 2), None, "a reloaded file voids old logins");
        let short = CredentialCache::new(Duration::from_millis(1), 100);
        short.insert(k, "u".into(), 1);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(short.get(&k, 1), None);
    }

    #[test]
    fn size_is_bounded() {
        let c = CredentialCache::new(Duration::from_secs(60), 32);
        for i in 0..1000u32 {
            c.insert(c.key(1, &i.to_le_bytes()), "u".into(), 1);
        }
        assert!(c.len() <= 32, "{}", c.len());
    }
}
