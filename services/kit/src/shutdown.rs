//! Graceful shutdown: SIGTERM or SIGINT cancels one token; servers stop accepting and drain
//! in-flight requests, background workers finish their current item, all within a deadline.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The shutdown coordinator shared by every server and worker in a process.
#[derive(Clone)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
    deadline: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("{pending} task(s) still running after the {deadline:?} drain deadline")]
pub struct DrainTimeout {
    pub pending: usize,
    pub deadline: Duration,
}

impl Shutdown {
    pub fn new(deadline: Duration) -> Self {
        Self {
            token: CancellationToken::new(),
            tracker: TaskTracker::new(),
            deadline,
        }
    }

    /// Cancelled when shutdown begins.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    pub fn is_shutting_down(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Begins shutdown.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Runs a task that shutdown waits for. The task should watch the token and stop promptly.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(task)
    }

    /// Triggers shutdown on SIGINT (Ctrl-C) or SIGTERM.
    pub fn listen_for_signals(&self) {
        let token = self.token.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = signal() => {
                    tracing::info!("shutdown signal received; draining");
                    token.cancel();
                }
                () = token.cancelled() => {}
            }
        });
    }

    /// Waits until shutdown was triggered and every tracked task has finished, or the deadline.
    pub async fn drained(&self) -> Result<(), DrainTimeout> {
        self.token.cancelled().await;
        self.tracker.close();
        match tokio::time::timeout(self.deadline, self.tracker.wait()).await {
            Ok(()) => Ok(()),
            Err(_) => Err(DrainTimeout {
                pending: self.tracker.len(),
                deadline: self.deadline,
            }),
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drains_tasks_that_finish_in_time() {
        let shutdown = Shutdown::new(Duration::from_secs(2));
        let token = shutdown.token();
        shutdown.spawn(async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        });
        shutdown.trigger();
        shutdown.drained().await.expect("drained in time");
    }

    #[tokio::test]
    async fn reports_tasks_that_overrun_the_deadline() {
        let shutdown = Shutdown::new(Duration::from_millis(50));
        shutdown.spawn(async { tokio::time::sleep(Duration::from_secs(30)).await });
        shutdown.trigger();
        let err = shutdown.drained().await.expect_err("overran");
        assert_eq!(err.pending, 1);
    }
}
