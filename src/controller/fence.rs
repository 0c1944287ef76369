//! Fencing: a replica that may have lost its leader Lease writes nothing.
//!
//! kube-lease-manager tells a leader it lost the Lease only after a failed
//! renewal and a read, and a process that was frozen (stopped, swapped
//! out, a stalled node) wakes with reconciles ready to send writes built
//! from a stale cache before that. So every client dualmesh builds carries
//! [`FenceLayer`]: it notes the instant each successful write of this
//! replica's Lease was *sent*, and refuses every other write once
//! `sent + lease duration - margin` has passed on the monotonic clock (which
//! keeps counting while a process is stopped). A standby can only take the
//! Lease once it expired, `lease duration` after the server saw the last
//! renewal, which is after it was sent: the fence closes `margin` earlier.
//!
//! Without leader election nothing is installed and nothing is fenced.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Method, Request, Response};
use tower::{BoxError, Layer, Service};

/// The Lease whose renewals keep writes open.
#[derive(Debug)]
pub struct Fence {
    /// `/apis/coordination.k8s.io/v1/namespaces/<ns>/leases/<name>`.
    lease_path: String,
    /// How long after a renewal was sent writes stay open.
    open_for: Duration,
    /// Writes are open until then; None before the Lease was first held.
    until: Mutex<Option<Instant>>,
}

static FENCE: OnceLock<Fence> = OnceLock::new();

impl Fence {
    fn new(namespace: &str, lease: &str, duration: Duration, margin: Duration) -> Self {
        Fence {
            lease_path: format!(
                "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{lease}"
            ),
            open_for: duration.saturating_sub(margin),
            until: Mutex::new(None),
        }
    }

    fn renewed(&self, sent: Instant) {
        let mut until = self.until.lock().expect("fence lock");
        let new = sent + self.open_for;
        if until.is_none_or(|u| u < new) {
            *until = Some(new);
        }
    }

    fn open(&self, now: Instant) -> bool {
        self.until
            .lock()
            .expect("fence lock")
            .is_some_and(|u| now < u)
    }

    /// A request for this replica's Lease (its renewals).
    fn is_lease(&self, path: &str) -> bool {
        path == self.lease_path
    }

    /// A request the fence never stops: the Lease itself, and creating it
    /// (a POST to the collection) before anyone held it.
    fn exempt(&self, path: &str) -> bool {
        self.is_lease(path)
            || self
                .lease_path
                .rsplit_once('/')
                .is_some_and(|(collection, _)| path == collection)
    }
}

/// Fences this process's writes on Lease `namespace/lease` of `duration`,
/// closing `margin` before the Lease could expire. Once per process.
pub fn install(namespace: &str, lease: &str, duration: Duration, margin: Duration) {
    let _ = FENCE.set(Fence::new(namespace, lease, duration, margin));
}

fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The tower layer that applies the installed fence (if any) to a client.
#[derive(Clone, Copy, Debug, Default)]
pub struct FenceLayer;

impl<S> Layer<S> for FenceLayer {
    type Service = FenceService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        FenceService { inner }
    }
}

#[derive(Clone, Debug)]
pub struct FenceService<S> {
    inner: S,
}

/// What a fenced write fails with.
#[derive(Debug, thiserror::Error)]
#[error("write refused: this replica's leader Lease may have expired (fenced until it is renewed)")]
pub struct Fenced;

impl<S, ReqB, ResB> Service<Request<ReqB>> for FenceService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResB>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let Some(fence) = FENCE.get() else {
            let call = self.inner.call(req);
            return Box::pin(async move { call.await.map_err(Into::into) });
        };
        let sent = Instant::now();
        let write = is_write(req.method());
        let lease = fence.is_lease(req.uri().path());
        if write && !fence.exempt(req.uri().path()) && !fence.open(sent) {
            tracing::warn!(method = %req.method(), path = %req.uri().path(), "write fenced: the leader Lease may have expired");
            return Box::pin(async { Err(Box::new(Fenced) as BoxError) });
        }
        let call = self.inner.call(req);
        Box::pin(async move {
            let response = call.await.map_err(Into::into)?;
            if write && lease && response.status().is_success() {
                fence.renewed(sent);
            }
            Ok(response)
        })
    }
}

/// A client for `config` with the fence applied.
pub fn client(config: kube::Config) -> Result<kube::Client, kube::Error> {
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&FenceLayer)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_open_only_within_the_duration_less_the_margin_of_a_renewal_sent() {
        let f = Fence::new(
            "ns",
            "dualmesh",
            Duration::from_secs(15),
            Duration::from_secs(3),
        );
        let t0 = Instant::now();
        assert!(!f.open(t0), "closed before the Lease was ever held");
        f.renewed(t0);
        assert!(f.open(t0 + Duration::from_millis(11_999)));
        assert!(!f.open(t0 + Duration::from_secs(12)));
        // An older renewal answered late never shortens the window.
        f.renewed(t0 + Duration::from_secs(5));
        f.renewed(t0);
        assert!(f.open(t0 + Duration::from_secs(16)));
        assert!(!f.open(t0 + Duration::from_secs(17)));
        assert!(f.is_lease("/apis/coordination.k8s.io/v1/namespaces/ns/leases/dualmesh"));
        assert!(!f.is_lease("/apis/coordination.k8s.io/v1/namespaces/ns/leases/other"));
        assert!(f.exempt("/apis/coordination.k8s.io/v1/namespaces/ns/leases"));
        assert!(!f.exempt("/apis/coordination.k8s.io/v1/namespaces/ns/leases/other"));
        assert!(!f.exempt("/api/v1/namespaces/ns/services/istio-ingressgateway"));
    }

    #[test]
    fn reads_are_never_writes() {
        assert!(!is_write(&Method::GET));
        assert!(is_write(&Method::PATCH));
        assert!(is_write(&Method::POST));
        assert!(is_write(&Method::DELETE));
        assert!(is_write(&Method::PUT));
    }
}
