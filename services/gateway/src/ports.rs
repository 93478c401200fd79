//! Traits the gateway needs from the outside world.

use futures::future::BoxFuture;

use crate::domain::gcra::{Decision, Gcra};

/// Why a rate-limit store could not decide (Redis down or too slow).
#[derive(Debug, Clone, thiserror::Error)]
#[error("rate-limit store: {0}")]
pub struct StoreError(pub String);

/// Where rate-limit state lives: one GCRA decision per call, atomic per bucket.
pub trait LimitStore: Send + Sync {
    /// Counts one request against `bucket` under `gcra` and says whether it is admitted.
    fn check<'a>(
        &'a self,
        bucket: &'a str,
        gcra: Gcra,
    ) -> BoxFuture<'a, Result<Decision, StoreError>>;

    /// Drops state that no longer matters (idle buckets); called periodically.
    fn maintain(&self) {}

    /// How many buckets are held in this process (0 for shared stores).
    fn buckets(&self) -> usize {
        0
    }
}
