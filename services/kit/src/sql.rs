//! What every SQL adapter shares: how long a request may wait for a connection, and which
//! sqlx errors mean "the database cannot be reached right now" (answered 503, retried by
//! consumers) rather than "this statement failed" (a 500 with its cause logged).

use std::time::Duration;

/// How long a request waits for a pooled connection. While the database is down sqlx keeps
/// trying to connect until this runs out, so it bounds how long a request hangs before the
/// service answers 503.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(1500);

/// Whether `e` means the database is unreachable or overloaded (no connection within
/// [`ACQUIRE_TIMEOUT`], a refused or broken connection), as opposed to a failed statement.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed
    )
}

/// [`is_unavailable`] for an error of any type: true only for such a `sqlx::Error`. Lets a
/// service's `BackendError::new(backend, e)` classify whatever it is given.
pub fn is_unavailable_any(e: &dyn std::any::Any) -> bool {
    e.downcast_ref::<sqlx::Error>().is_some_and(is_unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_trouble_is_unavailable_and_statement_errors_are_not() {
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(is_unavailable(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused
        ))));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        assert!(!is_unavailable(&sqlx::Error::ColumnNotFound("x".into())));
        assert!(is_unavailable_any(&sqlx::Error::PoolTimedOut));
        assert!(!is_unavailable_any(&"pool timed out"));
    }
}
