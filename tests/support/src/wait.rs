//! Waiting for a condition (never a sleep standing for one).

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`wait_for`] looks again.
const POLL: Duration = Duration::from_millis(100);

/// Polls `check` until it returns `Ok`, or panics after `timeout` with `what`
/// and the last state `check` described in its `Err`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}
