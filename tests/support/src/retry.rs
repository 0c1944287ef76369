//! The one retry for API requests that tests and benchmarks make: what
//! counts as transient, and how long to keep trying.

use std::future::Future;
use std::time::{Duration, Instant};

/// Whether a failed request is worth another try: no answer at all (the
/// API server is down, restarting or dropped the connection), 429 (it is
/// overloaded) or 500/502/503/504 (it or etcd is not ready). Every other
/// status is an answer: retrying cannot change it.
pub fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => matches!(s.code, 429 | 500 | 502 | 503 | 504),
        _ => true,
    }
}

/// How long [`retry`] keeps trying, and how often.
#[derive(Clone, Copy, Debug)]
pub struct Patience {
    /// Give up (and panic) once this much time has passed.
    pub within: Duration,
    /// The wait between two tries.
    pub every: Duration,
}

impl Patience {
    /// Through an API server restart: every 100 ms for up to 3 minutes.
    pub const RESTART: Patience = Patience {
        within: Duration::from_secs(180),
        every: Duration::from_millis(100),
    };
    /// Through overload: every 200 ms for up to 10 s.
    pub const OVERLOAD: Patience = Patience {
        within: Duration::from_secs(10),
        every: Duration::from_millis(200),
    };
}

/// Runs `op` until it succeeds, retrying [`transient`] errors as `patience`
/// says; panics with `what` on any other error or when patience runs out
/// (a request of the test's own failing is a broken test, not a finding).
/// `op` is told whether this is a retry (`true`): a request that timed out
/// may still have been carried out, so a retried create may meet 409.
pub async fn retry<T, F, Fut>(what: &str, patience: Patience, mut op: F) -> T
where
    F: FnMut(bool) -> Fut,
    Fut: Future<Output = kube::Result<T>>,
{
    let deadline = Instant::now() + patience.within;
    let mut again = false;
    loop {
        match op(again).await {
            Ok(v) => return v,
            Err(e) if transient(&e) && Instant::now() < deadline => {
                tokio::time::sleep(patience.every).await;
                again = true;
            }
            Err(e) if transient(&e) => {
                panic!("{what}: still failing after {:?}: {e}", patience.within)
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// Whether an error is the API server's 409 Conflict / AlreadyExists.
pub fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Whether an error is the API server's 404 Not Found.
pub fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("test", "Test")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn only_no_answer_overload_and_server_errors_are_transient() {
        for code in [429, 500, 502, 503, 504] {
            assert!(transient(&api(code)), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 422, 501] {
            assert!(!transient(&api(code)), "{code}");
        }
    }
}
