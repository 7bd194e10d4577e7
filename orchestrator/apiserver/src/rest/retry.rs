//! Retries of a write that lost a race on the object's revision.
//!
//! A write without a resourceVersion precondition (a merge patch, a PUT without
//! `metadata.resourceVersion`, a scale or binding) never answers 409 Conflict for a race it
//! lost: as Kubernetes' GuaranteedUpdate does, it reads the object again and retries until it
//! applies. The request's deadline bounds the retries (504 Timeout after it, as
//! kube-apiserver's request timeout would answer); after a few lost races each retry waits a
//! short random pause so that writers hammering one object spread out instead of colliding
//! again in lockstep.

use std::time::Duration;

use tokio::time::Instant;

use rand::Rng;

use crate::error::ApiError;

/// How long a write keeps retrying (kube-apiserver's default request timeout).
pub const WRITE_DEADLINE: Duration = Duration::from_secs(60);
/// Attempts made back to back before retries start to pause.
const EAGER_ATTEMPTS: u32 = 4;
/// Longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// The attempts of one write.
pub struct Attempts {
    deadline: Instant,
    made: u32,
}

impl Default for Attempts {
    fn default() -> Self {
        Self::within(WRITE_DEADLINE)
    }
}

impl Attempts {
    pub fn within(limit: Duration) -> Attempts {
        Attempts {
            deadline: Instant::now() + limit,
            made: 0,
        }
    }

    /// Whether another attempt may run (always the first one); pauses before a late retry.
    pub async fn next(&mut self) -> bool {
        if self.made > 0 && Instant::now() >= self.deadline {
            return false;
        }
        if self.made >= EAGER_ATTEMPTS {
            let ceiling = (Duration::from_millis(2) * (self.made - EAGER_ATTEMPTS + 1))
                .min(MAX_PAUSE)
                .as_micros() as u64;
            let pause = rand::thread_rng().gen_range(0..=ceiling);
            tokio::time::sleep(Duration::from_micros(pause)).await;
        }
        self.made += 1;
        true
    }

    /// The answer once the deadline passed with every attempt lost to another writer.
    pub fn exhausted(&self, what: &str) -> ApiError {
        ApiError::Timeout {
            message: format!(
                "Timeout: {what} kept losing to concurrent writes for {}s ({} attempts); please retry",
                WRITE_DEADLINE.as_secs(),
                self.made
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_until_the_deadline_then_times_out() {
        let mut attempts = Attempts::within(Duration::from_secs(1));
        let mut made = 0;
        while attempts.next().await {
            made += 1;
            assert!(made < 10_000, "the deadline must end the retries");
        }
        assert!(made > EAGER_ATTEMPTS as usize, "{made} attempts");
        let err = attempts.exhausted("the update of pods \"a\"");
        assert_eq!((err.code(), err.reason()), (504, "Timeout"));
    }

    #[tokio::test]
    async fn the_first_attempt_always_runs() {
        let mut attempts = Attempts::within(Duration::ZERO);
        assert!(attempts.next().await);
        assert!(!attempts.next().await);
    }
}
