//! Expectations: pods a controller has just created or deleted and that its (lagging) cache
//! has not shown yet. Until they are observed (or expire) the controller does not count again,
//! so it never creates or deletes twice for the same need.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an expectation is trusted before the controller counts again regardless.
pub const EXPECTATION_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct Pending {
    adds: HashSet<String>,
    dels: HashSet<String>,
    since: Option<Instant>,
}

/// Expectations of all controllers' objects, keyed by owner uid.
#[derive(Debug, Default)]
pub struct Expectations {
    inner: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    /// Records pods about to be created (by name) and deleted (by uid).
    pub fn expect(
        &self,
        owner: &str,
        adds: impl IntoIterator<Item = String>,
        dels: impl IntoIterator<Item = String>,
    ) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let p = m.entry(owner.to_string()).or_default();
        p.adds.extend(adds);
        p.dels.extend(dels);
        p.since = Some(Instant::now());
    }

    /// A creation failed: stop waiting for it.
    pub fn creation_failed(&self, owner: &str, name: &str) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = m.get_mut(owner) {
            p.adds.remove(name);
        }
    }

    /// A deletion failed or was not needed: stop waiting for it.
    pub fn deletion_observed(&self, owner: &str, uid: &str) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = m.get_mut(owner) {
            p.dels.remove(uid);
        }
    }

    /// Marks as observed what the cache now shows (`present_names`: names of pods present;
    /// `gone`: whether a uid is absent or terminating) and returns whether nothing is pending.
    pub fn satisfied(
        &self,
        owner: &str,
        present_names: &HashSet<&str>,
        gone: impl Fn(&str) -> bool,
    ) -> bool {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = m.get_mut(owner) else {
            return true;
        };
        p.adds.retain(|n| !present_names.contains(n.as_str()));
        p.dels.retain(|u| !gone(u));
        let expired = p.since.is_some_and(|t| t.elapsed() > EXPECTATION_TTL);
        if p.adds.is_empty() && p.dels.is_empty() || expired {
            m.remove(owner);
            return true;
        }
        false
    }

    /// uids still expected to disappear.
    pub fn pending_deletions(&self, owner: &str) -> HashSet<String> {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.get(owner).map(|p| p.dels.clone()).unwrap_or_default()
    }

    /// Forgets an owner (deleted).
    pub fn forget(&self, owner: &str) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_until_observed() {
        let e = Expectations::default();
        e.expect("rs", ["a".to_string(), "b".to_string()], ["u1".to_string()]);
        let mut present = HashSet::new();
        present.insert("a");
        assert!(!e.satisfied("rs", &present, |_| false));
        present.insert("b");
        assert!(!e.satisfied("rs", &present, |u| u != "u1"));
        assert!(e.satisfied("rs", &present, |_| true));
        assert!(e.satisfied("other", &HashSet::new(), |_| false));
        e.expect("rs", ["c".to_string()], []);
        e.creation_failed("rs", "c");
        assert!(e.satisfied("rs", &HashSet::new(), |_| false));
    }
}
