//! Sharding: with `--shards N`, every resource (and Connection) belongs to one of N shards by a stable
//! hash of its namespace and name, and a replica reconciles only the shards it holds (one Lease per
//! shard, so a standby takes a shard over). The hash is FNV-1a, fixed here rather than std's hasher, so
//! replicas of different builds agree during a rolling upgrade.

use std::sync::Mutex;

use tokio::sync::watch;
use tokio::time::Instant;

/// The shards this process holds, out of how many.
#[derive(Debug)]
pub struct Shards {
    count: u32,
    held: watch::Sender<u64>,
    /// When each held shard was taken.
    since: Mutex<Vec<Option<Instant>>>,
}

/// Most shards: the held set is a 64-bit mask.
pub const MAX_SHARDS: u32 = 64;

impl Shards {
    /// `count` shards (1 to [`MAX_SHARDS`]), none held yet.
    pub fn new(count: u32) -> Self {
        let count = count.clamp(1, MAX_SHARDS);
        Self { count, held: watch::Sender::new(0), since: Mutex::new(vec![None; count as usize]) }
    }

    /// How many shards there are.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The shard of the object `namespace/name`.
    pub fn shard_of(&self, namespace: &str, name: &str) -> u32 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in namespace.bytes().chain(std::iter::once(b'/')).chain(name.bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        (hash % u64::from(self.count)) as u32
    }

    /// Whether this process holds the shard of `namespace/name`.
    pub fn holds(&self, namespace: &str, name: &str) -> bool {
        *self.held.borrow() & (1 << self.shard_of(namespace, name)) != 0
    }

    /// This process now holds `shard` (its Lease was acquired, or it was assigned).
    pub fn hold(&self, shard: u32) {
        if shard < self.count {
            self.since.lock().unwrap_or_else(|p| p.into_inner())[shard as usize] = Some(Instant::now());
            self.held.send_modify(|held| *held |= 1 << shard);
        }
    }

    /// When this process took the shard of `namespace/name`, if it holds it: until then another replica
    /// may have been reconciling the object.
    pub fn held_since(&self, namespace: &str, name: &str) -> Option<Instant> {
        if !self.holds(namespace, name) {
            return None;
        }
        self.since.lock().unwrap_or_else(|p| p.into_inner())[self.shard_of(namespace, name) as usize]
    }

    /// The held set as a mask, and its changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.held.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_spread_over_the_shards_and_only_held_ones_are_reconciled() {
        let shards = Shards::new(3);
        let mut per_shard = [0; 3];
        for i in 0..300 {
            per_shard[shards.shard_of("team", &format!("svc-{i}")) as usize] += 1;
        }
        assert!(per_shard.iter().all(|n| (70..130).contains(n)), "{per_shard:?}");
        assert_eq!(shards.shard_of("team", "svc-1"), Shards::new(3).shard_of("team", "svc-1"), "stable");
        assert!(!shards.holds("team", "svc-1"), "nothing held yet");
        shards.hold(shards.shard_of("team", "svc-1"));
        assert!(shards.holds("team", "svc-1"));
        let other = (0..300)
            .map(|i| format!("svc-{i}"))
            .find(|n| shards.shard_of("team", n) != shards.shard_of("team", "svc-1"));
        assert!(!shards.holds("team", other.as_ref().unwrap()));
        assert!(shards.held_since("team", "svc-1").is_some());
        assert_eq!(shards.held_since("team", &other.clone().unwrap()), None);
        shards.hold(7);
        assert_eq!(*shards.subscribe().borrow(), 1 << shards.shard_of("team", "svc-1"), "no such shard");
    }
}
