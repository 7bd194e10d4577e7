//! Which etcd lease a key that must expire is attached to. As kube-apiserver's lease
//! manager, one lease is shared by the writes of a short window instead of one grant per
//! Event: a lease is granted for the TTL plus a reuse window, and handed out while it still
//! outlives the TTL by no more than that window, so every key lives at least its TTL and at
//! most TTL + window.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Longest a lease is reused (kube-apiserver's `leaseReuseDurationSeconds`).
const MAX_REUSE: Duration = Duration::from_secs(60);
/// The share of the TTL a lease is reused for, when below [`MAX_REUSE`] (its 5%).
const REUSE_PERCENT: u32 = 5;

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Granted {
    id: i64,
    expires: Instant,
}

/// The leases granted recently, by TTL.
#[derive(Debug, Default)]
pub struct Leases {
    by_ttl: HashMap<u64, Granted>,
}

/// How long a lease for `ttl` is reused.
pub fn reuse_window(ttl: Duration) -> Duration {
    (ttl * REUSE_PERCENT / 100).min(MAX_REUSE)
}

/// The whole seconds a lease for `ttl` is granted for (at least 1: etcd refuses 0).
pub fn grant_seconds(ttl: Duration) -> i64 {
    let total = ttl + reuse_window(ttl);
    i64::try_from(total.as_secs().max(1)).unwrap_or(i64::MAX)
}

impl Leases {
    /// The lease a key expiring `ttl` after `now` can take, if a granted one fits.
    pub fn reusable(&self, ttl: Duration, now: Instant) -> Option<i64> {
        let granted = self.by_ttl.get(&ttl.as_secs())?;
        (granted.expires >= now + ttl).then_some(granted.id)
    }

    /// Remember lease `id`, granted at `granted_at` for [`grant_seconds`]`(ttl)`.
    pub fn granted(&mut self, ttl: Duration, id: i64, granted_at: Instant) {
        let lifetime = Duration::from_secs(grant_seconds(ttl).unsigned_abs());
        let expires = granted_at + lifetime;
        self.by_ttl.insert(ttl.as_secs(), Granted { id, expires });
    }

    /// Forget lease `id` (etcd no longer knows it).
    pub fn forget(&mut self, id: i64) {
        self.by_ttl.retain(|_, g| g.id != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_shared_within_the_reuse_window_only() {
        let hour = Duration::from_secs(3600);
        assert_eq!(reuse_window(hour), Duration::from_secs(60));
        assert_eq!(
            reuse_window(Duration::from_secs(20)),
            Duration::from_secs(1)
        );
        assert_eq!(grant_seconds(hour), 3660);
        assert_eq!(grant_seconds(Duration::from_millis(10)), 1);
        let t0 = Instant::now();
        let mut leases = Leases::default();
        assert_eq!(leases.reusable(hour, t0), None);
        leases.granted(hour, 7, t0);
        assert_eq!(leases.reusable(hour, t0 + Duration::from_secs(59)), Some(7));
        assert_eq!(leases.reusable(hour, t0 + Duration::from_secs(60)), Some(7));
        // later, a key on that lease would live less than its TTL
        assert_eq!(leases.reusable(hour, t0 + Duration::from_secs(61)), None);
        // another TTL takes another lease
        assert_eq!(leases.reusable(Duration::from_secs(60), t0), None);
        leases.forget(7);
        assert_eq!(leases.reusable(hour, t0), None);
    }
}
