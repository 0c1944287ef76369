//! Fencing: a replica that may have lost its leader Lease sends nothing.
//!
//! kube-lease-manager tells a leader it lost the Lease only after a failed
//! renewal and a read, and a process that was frozen (stopped, swapped out,
//! a stalled node) wakes with reconciles ready to send writes built from a
//! stale cache before that. So the fence notes the instant each successful
//! renewal of this replica's Lease was *sent*, and counts writes as open
//! until `sent + lease duration - margin` on the monotonic clock (which
//! keeps counting while a process is stopped). A standby can only take the
//! Lease once it expired, `lease duration` after the server saw the last
//! renewal, which is after it was sent: the fence closes `margin` earlier.
//!
//! The fence is checked as late as this process can check it:
//!
//! 1. when a request is handed to the client ([`FenceLayer`]);
//! 2. while it waits for its answer: a request still unanswered when the
//!    fence closes is abandoned (its connection is dropped with it);
//! 3. at the connection ([`FencedConnector`]): every write of bytes to the
//!    socket (TLS records included) is refused once the fence closed, so a
//!    request queued for a pooled connection, retried by a lower layer, or
//!    frozen between the first two checks and the socket never leaves.
//!
//! What is left is the instant between the last check and the `write`
//! system call; bytes the kernel already holds are sent even while this
//! process is stopped. Kubernetes Leases are not fencing tokens, so those
//! writes are refused by the API server instead: every write dualmesh makes
//! carries a precondition on what its reconcile read (see
//! [`super::ssa`]), and a new leader that changed the object makes it
//! fail with 409.
//!
//! The Lease itself is renewed through its own client without the
//! connection check (a closed fence must not stop the renewal that would
//! reopen it). Without leader election nothing is installed and nothing is
//! fenced.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Method, Request, Response};
use hyper_util::client::legacy::connect::{Connected, Connection};
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

    fn until(&self) -> Option<Instant> {
        *self.until.lock().expect("fence lock")
    }

    fn open(&self, now: Instant) -> bool {
        self.until().is_some_and(|u| now < u)
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

/// Fences this process's requests on Lease `namespace/lease` of `duration`,
/// closing `margin` before the Lease could expire. Once per process.
pub fn install(namespace: &str, lease: &str, duration: Duration, margin: Duration) {
    let _ = FENCE.set(Fence::new(namespace, lease, duration, margin));
}

/// Whether this process may send now: no fence installed, or it is open.
fn may_send() -> bool {
    FENCE.get().is_none_or(|f| f.open(Instant::now()))
}

fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// What a fenced request fails with.
#[derive(Debug, thiserror::Error)]
#[error(
    "request refused: this replica's leader Lease may have expired (fenced until it is renewed)"
)]
pub struct Fenced;

/// The tower layer that applies the installed fence (if any) to a client:
/// checks 1 and 2 of the module docs, and notes the Lease renewals.
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

impl<S, ReqB, ResB> Service<Request<ReqB>> for FenceService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    ResB: Send + 'static,
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
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        if fence.exempt(&path) {
            let renewal = is_write(&method) && fence.is_lease(&path);
            let call = self.inner.call(req);
            return Box::pin(async move {
                let response = call.await.map_err(Into::into)?;
                if renewal && response.status().is_success() {
                    fence.renewed(sent);
                }
                Ok(response)
            });
        }
        if !fence.open(sent) {
            tracing::warn!(%method, %path, "request fenced: the leader Lease may have expired");
            return Box::pin(async { Err(Box::new(Fenced) as BoxError) });
        }
        // The evidence the fault tests read: every request this replica
        // started, with the time (see tests/chaos_leader.rs).
        tracing::debug!(target: "dualmesh::fence", %method, %path, "request started");
        let call = self.inner.call(req);
        Box::pin(async move {
            let mut call = std::pin::pin!(call);
            loop {
                let Some(until) = fence.until() else {
                    return Err(Box::new(Fenced) as BoxError);
                };
                tokio::select! {
                    response = &mut call => return response.map_err(Into::into),
                    () = tokio::time::sleep_until(until.into()) => {
                        if !fence.open(Instant::now()) {
                            tracing::warn!(%method, %path, "request abandoned: the fence closed before it was answered");
                            return Err(Box::new(Fenced) as BoxError);
                        }
                    }
                }
            }
        })
    }
}

/// Wraps a connector so that its connections refuse to write once the
/// fence closed (check 3 of the module docs).
#[derive(Clone, Debug)]
pub struct FencedConnector<C>(pub C);

impl<C> Service<http::Uri> for FencedConnector<C>
where
    C: Service<http::Uri>,
    C::Future: Send + 'static,
{
    type Response = FencedIo<C::Response>;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, C::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move { connecting.await.map(FencedIo) })
    }
}

/// A connection whose writes pass the fence first.
#[derive(Debug)]
pub struct FencedIo<T>(T);

fn fenced_io() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::PermissionDenied, Fenced)
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for FencedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for FencedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if !may_send() {
            return Poll::Ready(Err(fenced_io()));
        }
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if !may_send() {
            return Poll::Ready(Err(fenced_io()));
        }
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<T: Connection> Connection for FencedIo<T> {
    fn connected(&self) -> Connected {
        self.0.connected()
    }
}

/// The clients of one process: `controllers` for everything the
/// controllers do (all three checks), `lease` for leader election only
/// (notes renewals; never fenced).
pub struct Clients {
    pub controllers: kube::Client,
    pub lease: kube::Client,
}

/// Builds both clients for `config`. Connections have TCP_NODELAY set:
/// requests are small and latency-bound (Nagle's algorithm held some for
/// tens of milliseconds).
pub fn clients(config: kube::Config) -> Result<Clients, kube::Error> {
    let lease = kube::client::ClientBuilder::try_from(config.clone())?
        .with_layer(&FenceLayer)
        .build();
    let controllers = if config.proxy_url.is_some() {
        // kube's own stack knows proxies; ours does not. Checks 1 and 2 stay.
        tracing::warn!("a proxy is configured: the write fence is not checked at the connection");
        kube::client::ClientBuilder::try_from(config)?
            .with_layer(&FenceLayer)
            .build()
    } else {
        fenced_client(&config)?
    };
    Ok(Clients { controllers, lease })
}

/// kube's default stack (base URI, auth, headers, timeouts, rustls) over
/// a [`FencedConnector`], with [`FenceLayer`] outermost.
fn fenced_client(config: &kube::Config) -> Result<kube::Client, kube::Error> {
    use kube::client::ConfigExt;
    use tower::ServiceBuilder;

    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = config.rustls_https_connector_with_connector(FencedConnector(http))?;
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    let client: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Builder::new(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let service = ServiceBuilder::new()
        .layer(FenceLayer)
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(client);
    Ok(kube::client::ClientBuilder::new(service, config.default_namespace.clone()).build())
}

/// A client for `config` with the fence applied at every check (member
/// clusters: their writes are as stale as the management cluster's).
pub fn client(config: kube::Config) -> Result<kube::Client, kube::Error> {
    if config.proxy_url.is_some() {
        return Ok(kube::client::ClientBuilder::try_from(config)?
            .with_layer(&FenceLayer)
            .build());
    }
    fenced_client(&config)
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
