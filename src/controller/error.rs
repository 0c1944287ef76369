//! The one error type of the operator's I/O half, its stable metric
//! categories, and how long to wait before trying again after it.
//!
//! Messages never carry Secret data: they come from our own text or from
//! kube's rendering of an API status (the API server does not echo Secret
//! data). Conditions never quote them for member clusters: see
//! [`crate::desired::conditions`].

use std::time::Duration;

/// What a reconcile (or the process around it) failed with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to an API server failed: refused (4xx), failed (5xx), or
    /// never answered (transport, fenced).
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An object dualmesh would write exists and belongs to someone else.
    #[error(
        "{kind} {object} exists and is not managed by dualmesh for {owner}; delete it, or label it {label}=dualmesh and annotate it {annotation}={owner} to hand it over"
    )]
    NotOurs {
        kind: &'static str,
        object: String,
        owner: String,
        label: &'static str,
        annotation: &'static str,
    },
    /// The API server refused the gateway Service's externalIPs (an
    /// admission plugin or policy): retrying soon would be refused again.
    #[error("the API server refused the gateway Service's externalIPs (HTTP {code})")]
    ExternalIpsRefused { code: u16 },
    /// A watch cache did not fill in time (its API server is slow or away).
    #[error("the {cache} cache did not fill within {waited:?}")]
    CacheNotFilled {
        cache: &'static str,
        waited: Duration,
    },
    /// A watch cache's writer is gone (the process is stopping).
    #[error("the {cache} cache was dropped")]
    CacheGone { cache: &'static str },
    /// The object has no namespace where one is required.
    #[error("{kind} {name} has no namespace")]
    Unnamespaced { kind: &'static str, name: String },
    /// The finalizer could not be read or written.
    #[error("finalizer of {object}: {source}")]
    Finalizer {
        object: String,
        #[source]
        source: Box<kube::runtime::finalizer::Error<Error>>,
    },
    /// Leader election failed.
    #[error("leader election: {0}")]
    Leader(#[source] kube_lease_manager::LeaseManagerError),
    /// The leader Lease watch ended without an error.
    #[error("leader election: the Lease watch stopped")]
    LeaderWatchStopped,
    /// A Kubernetes client could not be built.
    #[error("cannot build a Kubernetes client: {0}")]
    Client(String),
    /// Several jobs of one reconcile failed; each is reported.
    #[error("{}", list(.0))]
    Jobs(Vec<Error>),
}

fn list(errors: &[Error]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The longest wait before retrying after a transient failure: about what
/// the watches wait at most (`backoff::WatchBackoff`), so an object whose
/// reconcile failed while an API server was away is retried within seconds
/// of its return, and an API server that stays away costs one request per
/// object every 5 s.
pub const TRANSIENT_RETRY_MAX: Duration = Duration::from_secs(5);

impl Error {
    /// Folds the failures of several jobs into one error (None: all fine).
    pub fn from_jobs(errors: Vec<Error>) -> Option<Error> {
        let mut flat = Vec::new();
        for e in errors {
            match e {
                Error::Jobs(inner) => flat.extend(inner),
                e => flat.push(e),
            }
        }
        match flat.len() {
            0 => None,
            1 => flat.pop(),
            _ => Some(Error::Jobs(flat)),
        }
    }

    /// The text for a condition or an Event: dualmesh's own words, and for
    /// a failed request only its status code and reason
    /// ([`super::ssa::describe`]), never the API server's message, which a
    /// member cluster chooses.
    pub fn describe(&self) -> String {
        match self {
            Error::Kube(e) => super::ssa::describe(e),
            Error::Finalizer { object, source } => match source.as_ref() {
                kube::runtime::finalizer::Error::AddFinalizer(e)
                | kube::runtime::finalizer::Error::RemoveFinalizer(e) => {
                    format!("finalizer of {object}: {}", super::ssa::describe(e))
                }
                _ => format!("finalizer of {object} could not be handled"),
            },
            Error::Jobs(all) => all
                .iter()
                .map(Error::describe)
                .collect::<Vec<_>>()
                .join("; "),
            e => e.to_string(),
        }
    }

    /// The stable categories for metrics and logs: one per failure (a
    /// reconcile whose jobs failed in two ways counts both).
    pub fn categories(&self) -> Vec<&'static str> {
        match self {
            Error::Jobs(all) => all.iter().flat_map(Error::categories).collect(),
            e => vec![e.category()],
        }
    }

    fn category(&self) -> &'static str {
        match self {
            Error::Kube(e) => kube_category(e),
            Error::NotOurs { .. } => "not-ours",
            Error::ExternalIpsRefused { .. } => "forbidden",
            Error::CacheNotFilled { .. } | Error::CacheGone { .. } => "cache",
            Error::Finalizer { source, .. } => match source.as_ref() {
                kube::runtime::finalizer::Error::AddFinalizer(e)
                | kube::runtime::finalizer::Error::RemoveFinalizer(e) => kube_category(e),
                _ => "finalizer",
            },
            Error::Leader(_) | Error::LeaderWatchStopped => "leader",
            Error::Unnamespaced { .. } | Error::Client(_) => "other",
            Error::Jobs(_) => "jobs",
        }
    }

    /// Worth retrying soon: the same request may well succeed once the API
    /// server is back, a conflict was read again, or a cache filled.
    /// Refusals (403, 422, an object that is not ours) are not: they keep
    /// the long backoff until something changes.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Jobs(all) => all.iter().any(Error::is_transient),
            e => matches!(
                e.category(),
                "transport" | "conflict" | "server" | "throttled" | "fenced" | "cache"
            ),
        }
    }

    /// How long to wait after the `failures`-th consecutive failure. A
    /// conflict alone (the object changed since it was read, often by this
    /// replica's own write not yet in its cache) is retried sooner: 100 ms
    /// doubling.
    pub fn retry_after(&self, failures: u32) -> Duration {
        if self.categories().iter().all(|c| *c == "conflict") {
            let ms = 100u64 << failures.saturating_sub(1).min(6);
            return Duration::from_millis(ms).min(TRANSIENT_RETRY_MAX);
        }
        let wait = backoff_for(failures);
        if self.is_transient() {
            wait.min(TRANSIENT_RETRY_MAX)
        } else {
            wait
        }
    }
}

fn kube_category(e: &kube::Error) -> &'static str {
    match e {
        kube::Error::Api(s) => match s.code {
            409 => "conflict",
            403 => "forbidden",
            400 | 422 => "invalid",
            404 => "not-found",
            429 => "throttled",
            500..=599 => "server",
            _ => "api",
        },
        kube::Error::Service(inner) if inner.is::<super::fence::Fenced>() => "fenced",
        kube::Error::SerdeError(_) => "serialization",
        _ => "transport",
    }
}

/// The wait after `n` consecutive failures: 1, 2, 4 ... seconds, capped at 300.
pub fn backoff_for(n: u32) -> Duration {
    let secs = 1u64 << n.saturating_sub(1).min(9);
    Duration::from_secs(secs.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> Error {
        Error::Kube(kube::Error::Api(Box::new(
            kube::core::Status::failure("refused", "Reason").with_code(code),
        )))
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let waits: Vec<u64> = (1..=12).map(|n| backoff_for(n).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }

    /// A publish that failed with a conflict, a 5xx or a transport error is
    /// retried within 5 s however often it failed, under its real category
    /// (before, it was flattened into a message: "other", up to 300 s).
    #[test]
    fn transient_failures_retry_within_five_seconds_under_their_category() {
        let transport = Error::Kube(kube::Error::Service("connection refused".into()));
        let fenced = Error::Kube(kube::Error::Service(Box::new(super::super::fence::Fenced)));
        let cache = Error::CacheNotFilled {
            cache: "gateway Pod",
            waited: Duration::from_secs(10),
        };
        let conflict = api(409);
        assert_eq!(conflict.categories(), vec!["conflict"]);
        assert_eq!(conflict.retry_after(1), Duration::from_millis(100));
        assert_eq!(conflict.retry_after(4), Duration::from_millis(800));
        assert_eq!(conflict.retry_after(12), TRANSIENT_RETRY_MAX);
        let cases = [
            (api(500), "server"),
            (api(503), "server"),
            (api(429), "throttled"),
            (transport, "transport"),
            (fenced, "fenced"),
            (cache, "cache"),
        ];
        for (e, category) in &cases {
            assert_eq!(e.categories(), vec![*category], "{e}");
            assert!(e.is_transient(), "{e}");
            assert_eq!(e.retry_after(1), Duration::from_secs(1), "{e}");
            assert_eq!(e.retry_after(12), TRANSIENT_RETRY_MAX, "{e}");
        }
    }

    #[test]
    fn refusals_keep_the_long_backoff() {
        let not_ours = Error::NotOurs {
            kind: "ConfigMap",
            object: "istio-system/a-istiooperator".into(),
            owner: "dualmesh-system/a".into(),
            label: "app.kubernetes.io/managed-by",
            annotation: "dualmesh.io/owner",
        };
        let cases = [
            (api(403), "forbidden"),
            (api(422), "invalid"),
            (Error::ExternalIpsRefused { code: 403 }, "forbidden"),
            (not_ours, "not-ours"),
        ];
        for (e, category) in &cases {
            assert_eq!(e.categories(), vec![*category], "{e}");
            assert!(!e.is_transient(), "{e}");
            assert_eq!(e.retry_after(12), Duration::from_secs(300), "{e}");
        }
    }

    #[test]
    fn several_failed_jobs_are_each_reported_and_counted() {
        let e = Error::from_jobs(vec![
            api(409),
            Error::from_jobs(vec![Error::ExternalIpsRefused { code: 403 }, api(500)]).unwrap(),
        ])
        .unwrap();
        assert_eq!(e.categories(), vec!["conflict", "forbidden", "server"]);
        assert!(
            e.is_transient(),
            "one transient failure makes the retry soon"
        );
        let text = e.to_string();
        assert_eq!(text.matches("Kubernetes API").count(), 2, "{text}");
        assert!(text.contains("externalIPs (HTTP 403)"), "{text}");
        assert!(Error::from_jobs(Vec::new()).is_none());
        let one = Error::from_jobs(vec![api(404)]).unwrap();
        assert!(matches!(one, Error::Kube(_)), "{one:?}");
    }
}
