//! Waiting for a condition without sleeping in tests: poll it every 20 ms until a deadline.

use std::future::Future;
use std::time::Duration;

/// How often [`eventually`] asks again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Calls `f` until it returns `Some`, every 20 ms, and returns that value.
///
/// # Panics
/// When `deadline` passes first; the message names `what` (say what was awaited, e.g.
/// "the message in reader@example.test's Maildir").
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = tokio::time::Instant::now();
    let give_up = started + deadline;
    loop {
        if let Some(value) = f().await {
            return value;
        }
        let now = tokio::time::Instant::now();
        if now >= give_up {
            panic!("timed out after {:?} waiting for {what}", now - started);
        }
        tokio::time::sleep(POLL_INTERVAL.min(give_up - now)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn eventually_returns_the_first_value() {
        let mut calls = 0;
        let value = eventually(Duration::from_secs(5), "the third call", || {
            calls += 1;
            let ready = calls >= 3;
            async move { ready.then_some(42) }
        })
        .await;
        assert_eq!(value, 42);
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for something that never happens")]
    async fn eventually_panics_with_what_after_the_deadline() {
        eventually(
            Duration::from_millis(50),
            "something that never happens",
            || async { None::<()> },
        )
        .await;
    }
}
