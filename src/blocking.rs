//! Blocking work (file reads, meta.json and run locks) moved off the async runtime's worker
//! threads, and the one error for when such a task does not finish.
//!
//! Owns only that hand-off: what runs on the thread, and what its own errors mean, stay with
//! the caller. A task that panics or is cancelled is a bug or a shutdown, never an answer
//! about the inputs or the registry, so every module reports it as the same [`TaskFailed`]
//! (its `Task` variant) rather than as bad input or a missing manifest.

/// A blocking task that did not finish: it panicked, or the runtime shut down under it.
#[derive(Debug, thiserror::Error)]
#[error("{what}: the task did not finish: {source}")]
pub struct TaskFailed {
    /// What the task was doing, e.g. "reading the build's records".
    pub what: String,
    pub source: tokio::task::JoinError,
}

/// Runs `f` on the runtime's blocking pool and waits for it.
pub async fn run<T, F>(what: impl Into<String>, f: F) -> Result<T, TaskFailed>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|source| TaskFailed {
            what: what.into(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_finished_task_returns_its_value() {
        assert_eq!(run("adding", || 2 + 2).await.unwrap(), 4);
    }

    #[tokio::test]
    async fn a_panicking_task_is_a_task_failure_that_says_what_it_was_doing() {
        let err = run("reading the build's records", || -> u8 { panic!("boom") })
            .await
            .unwrap_err();
        assert!(err.source.is_panic());
        let msg = err.to_string();
        assert!(
            msg.starts_with("reading the build's records: the task did not finish"),
            "{msg}"
        );
    }
}
