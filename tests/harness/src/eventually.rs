//! Waiting for a condition without sleeping blindly (linkerd's `assert_eventually!`).
//!
//! Tests never sleep to synchronise: they state what must become true and retry the check.
//! The deadline is an upper bound for slow CI machines, not the expected time.

use std::time::Duration;

use anyhow::anyhow;
use tokio::time::Instant;

/// How long to wait between two attempts.
const RETRY_EVERY: Duration = Duration::from_millis(50);

/// Runs `f` every ~50 ms until it returns `Ok`, or fails with its last error after `deadline`.
///
/// An attempt that is still running at the deadline is abandoned, so a hung request cannot
/// stretch the wait.
pub async fn eventually<T>(
    deadline: Duration,
    mut f: impl AsyncFnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    let end = start + deadline;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let remaining = end.saturating_duration_since(Instant::now());
        let last = match tokio::time::timeout(remaining.max(RETRY_EVERY), f()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e,
            Err(_) => anyhow!("attempt still running at the deadline"),
        };
        if Instant::now() + RETRY_EVERY > end {
            return Err(last.context(format!(
                "condition not met within {deadline:?} ({attempts} attempts)"
            )));
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retries_until_ok() {
        let mut n = 0;
        let v = eventually(Duration::from_secs(5), async || {
            n += 1;
            anyhow::ensure!(n >= 3, "only {n}");
            Ok(n)
        })
        .await
        .unwrap();
        assert_eq!(v, 3);
    }

    #[tokio::test]
    async fn returns_the_last_error() {
        let err = eventually(
            Duration::from_millis(200),
            async || -> anyhow::Result<()> { anyhow::bail!("still broken") },
        )
        .await
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("still broken"), "{text}");
        assert!(text.contains("not met within"), "{text}");
    }
}
