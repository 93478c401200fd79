//! Traits the gateway needs from the outside world.

use futures::future::BoxFuture;

use crate::domain::gcra::{Decision, Gcra};

/// Why a rate-limit store could not decide (Redis down or too slow).
#[derive(Debug, Clone, thiserror::Error)]
#[error("rate-limit store: {0}")]
pub struct StoreError(pub String);

/// A store's decision: made at once (a store in this process), or to be awaited (a remote
/// one).
pub enum Checked<'a> {
    Now(Result<Decision, StoreError>),
    Later(BoxFuture<'a, Result<Decision, StoreError>>),
}

impl Checked<'_> {
    /// The decision, awaited when it is not made yet.
    pub async fn decided(self) -> Result<Decision, StoreError> {
        match self {
            Self::Now(decision) => decision,
            Self::Later(decided) => decided.await,
        }
    }
}

/// Where rate-limit state lives: one GCRA decision per call, atomic per bucket.
pub trait LimitStore: Send + Sync {
    /// Counts one request against `bucket` under `gcra` and says whether it is admitted. The
    /// bucket is given owned: an in-memory store keeps the key of a new one, and looks an old
    /// one up by it, with no copy made.
    fn check(&self, bucket: String, gcra: Gcra) -> Checked<'_>;

    /// Drops state that no longer matters (idle buckets); called periodically.
    fn maintain(&self) {}

    /// How many buckets are held in this process (0 for shared stores).
    fn buckets(&self) -> usize {
        0
    }
}
