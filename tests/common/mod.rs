//! Helpers shared by the integration tests that run the operator: CRDs in,
//! examples in, the operator as a process with its own identity, polling,
//! what dualmesh renders and publishes, and the constants of its contract
//! (imported from dualmesh, never retyped). [`chaos`] holds what the fault
//! tests share.
#![allow(dead_code)]

pub mod chaos;
pub mod charts;
pub mod istio_charts;
pub mod rbac;
pub mod trust;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dualmesh::api::{DualStackPolicy, DualStackPolicySpec, MeshCluster};
use dualmesh::desired::istio_operator::{self, Rendered};
use dualmesh::desired::validate::{validate_mesh_cluster, validate_policy};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use testplane::ControlPlane;
use testplane::operator::Operator;

/// The operator's user name at the API server (its client certificate CN).
pub const OPERATOR_USER: &str = "dualmesh-operator";
/// The namespace MeshClusters live in.
pub const NS: &str = "dualmesh-system";
/// The log filter tests run the operator with unless they need more.
pub const LOG: &str = "info,dualmesh=debug";
/// The Istio namespace of the examples (where IstioOperators are published).
pub const ISTIO_NS: &str = "istio-system";

// dualmesh's contract with what it writes, from the one place that defines
// each (a test that retyped them would not notice a change). Each test
// binary uses some of them.
#[allow(unused_imports)]
pub use dualmesh::controller::FINALIZER;
#[allow(unused_imports)]
pub use dualmesh::controller::publish::{CONFIG_MAP_KEY, HASH_ANNOTATION, OWNER_ANNOTATION};
#[allow(unused_imports)]
pub use dualmesh::desired::istio_operator::{MANAGED_BY, MESH_CLUSTER_LABEL};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Polls `check` every 100 ms until it returns Some, or panics after `timeout`
/// with `what` and the last state `check` described.
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
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Installs one CRD from YAML and waits until it is Established.
pub async fn install_crd(client: &Client, yaml: &str) {
    let crd: CustomResourceDefinition = serde_saphyr::from_str(yaml).expect("CRD YAML");
    let name = crd.metadata.name.clone().expect("CRD name");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        &name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply CRD");
    wait_for(
        &format!("CRD {name} established"),
        Duration::from_secs(20),
        || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let crd = api.get(&name).await.map_err(|e| e.to_string())?;
                let ok = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                if ok {
                    Ok(())
                } else {
                    Err("not established".into())
                }
            }
        },
    )
    .await;
}

/// Installs dualmesh's CRDs (the checked-in crds/ files).
pub async fn install_dualmesh_crds(client: &Client) {
    for (file, _) in dualmesh::api::crd_files() {
        let yaml = std::fs::read_to_string(repo().join("crds").join(file)).expect("crds/ file");
        install_crd(client, &yaml).await;
    }
}

/// A stand-in for Istio's IstioOperator CRD: same group, version, kind,
/// plural and scope, and (like Istio's) an open schema.
pub const ISTIO_OPERATOR_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: istiooperators.install.istio.io
spec:
  group: install.istio.io
  names:
    kind: IstioOperator
    listKind: IstioOperatorList
    plural: istiooperators
    singular: istiooperator
    shortNames: [iop, io]
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources:
      status: {}
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

pub async fn create_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("create namespace {name}: {e}"),
    }
}

/// Reads one example file.
pub fn example<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let text = std::fs::read_to_string(repo().join("examples").join(file)).expect("example file");
    serde_saphyr::from_str(&text).expect("example parses")
}

pub async fn create_policy(client: &Client, policy: &DualStackPolicy) {
    let api: Api<DualStackPolicy> = Api::all(client.clone());
    api.create(&PostParams::default(), policy)
        .await
        .expect("create policy");
}

pub async fn create_meshcluster(client: &Client, mc: &MeshCluster) {
    let ns = mc
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| NS.to_string());
    create_namespace(client, &ns).await;
    let api: Api<MeshCluster> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), mc)
        .await
        .expect("create meshcluster");
}

/// Starts `dualmesh run` against `plane` as user [`OPERATOR_USER`]
/// (cluster-admin through `system:masters`), logging with `filter` to
/// `<plane dir>/<log>`.
pub fn start_operator(plane: &ControlPlane, log: &str, filter: &str, extra: &[&str]) -> Operator {
    let kubeconfig = plane
        .user_kubeconfig(OPERATOR_USER, &["system:masters"], "operator.kubeconfig")
        .expect("operator kubeconfig");
    let mut args = vec!["--namespace", NS, "--log", filter];
    // Tests run side by side: any free port, read back with `http_addr`.
    if !extra.contains(&"--listen") {
        args.extend_from_slice(&["--listen", "[::1]:0"]);
    }
    args.extend_from_slice(extra);
    Operator::start(
        Path::new(env!("CARGO_BIN_EXE_dualmesh")),
        &kubeconfig,
        &args,
        &plane.dir().join(log),
    )
    .expect("start dualmesh")
}

/// The writes the operator made, as `verb resource[/sub] ns/name` lines.
pub fn operator_writes(plane: &ControlPlane) -> Vec<String> {
    plane
        .writes_by(OPERATOR_USER)
        .expect("audit log")
        .into_iter()
        .map(|w| {
            format!(
                "{} {}{} {}/{}",
                w.verb,
                w.resource,
                w.subresource.map(|s| format!("/{s}")).unwrap_or_default(),
                w.namespace.unwrap_or_default(),
                w.name.unwrap_or_default()
            )
        })
        .collect()
}

/// Waits until the operator's writes (from the audit log) stopped arriving:
/// none new for 1 s (its Events are sent from a queue, after the status
/// they tell of); returns them. Panics when that does not happen `within`.
pub async fn wait_writes_settled(plane: &ControlPlane, within: Duration) -> Vec<String> {
    const STILL: Duration = Duration::from_secs(1);
    let deadline = Instant::now() + within;
    let mut last = operator_writes(plane);
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = operator_writes(plane);
        if now.len() != last.len() {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= STILL {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "the operator kept writing for {within:?}: {:?}",
            &last[last.len().saturating_sub(10)..]
        );
    }
}

/// The condition `type_` of a MeshCluster as `(status, reason, message)`.
pub fn condition(mc: &MeshCluster, type_: &str) -> Option<(String, String, String)> {
    mc.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// The gateway's namespace and name in the examples.
pub const GW_NS: &str = "istio-system";
pub const GW: &str = "istio-ingressgateway";

/// The labels of the gateway Pods (`app: istio-ingressgateway`).
pub fn gateway_labels() -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::from([("app".to_string(), GW.to_string())])
}

/// The gateway Service as Istio's installer creates it (dual-stack NodePort).
pub async fn create_gateway_service(client: &Client) {
    use k8s_openapi::api::core::v1::Service;
    create_namespace(client, GW_NS).await;
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": GW, "namespace": GW_NS, "labels": {"app": GW}},
        "spec": {
            "type": "NodePort",
            "ipFamilyPolicy": "PreferDualStack",
            "ipFamilies": ["IPv6", "IPv4"],
            "selector": {"app": GW},
            "ports": [
                {"name": "http2", "port": 80, "targetPort": 8080},
                {"name": "tls", "port": 15443, "targetPort": 15443, "nodePort": 32443}
            ]
        }
    }))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), GW_NS)
        .create(&PostParams::default(), &svc)
        .await
        .expect("create gateway Service");
}

/// A whole gateway: the Service, Node `node` with `addresses` (InternalIP),
/// and a ready gateway Pod `gw` on it.
pub async fn create_gateway(client: &Client, node: &str, addresses: &[&str]) {
    create_gateway_service(client).await;
    let addrs: Vec<(&str, &str)> = addresses.iter().map(|a| ("InternalIP", *a)).collect();
    testplane::kubelet::create_node(client, node, &addrs)
        .await
        .expect("create node");
    testplane::kubelet::create_running_pod(
        client,
        GW_NS,
        "gw",
        &gateway_labels(),
        node,
        &["fd00::5"],
    )
    .await
    .expect("create gateway pod");
}

/// The gateway Service's externalIPs; None when the Service does not exist.
pub async fn external_ips(client: &Client) -> Option<Vec<String>> {
    use k8s_openapi::api::core::v1::Service;
    let svc = Api::<Service>::namespaced(client.clone(), GW_NS)
        .get_opt(GW)
        .await
        .expect("get gateway Service")?;
    Some(svc.spec.and_then(|s| s.external_ips).unwrap_or_default())
}

/// Waits until the gateway Service's externalIPs are exactly `want`.
pub async fn wait_external_ips(client: &Client, want: &[&str], within: Duration) {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    wait_for(&format!("externalIPs {want:?}"), within, || async {
        match external_ips(client).await {
            Some(ips) if ips == want => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// Waits until MeshCluster `name` (in [`NS`]) has condition `type_` with
/// `status` and `reason`; returns the object and the condition's message.
pub async fn wait_mc(
    client: &Client,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
    within: Duration,
) -> (MeshCluster, String) {
    wait_for(
        &format!("MeshCluster {name} {type_}={status} ({reason})"),
        within,
        || async {
            let mc = Api::<MeshCluster>::namespaced(client.clone(), NS)
                .get_opt(name)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("absent")?;
            match condition(&mc, type_) {
                Some((s, r, m)) if s == status && r == reason => Ok((mc, m)),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

/// The address an operator serves /healthz, /readyz and /metrics on, read
/// from its log (it binds port 0 in tests).
pub async fn http_addr(operator: &Operator) -> std::net::SocketAddr {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let log = operator.log();
        if let Some(line) = log
            .lines()
            .find(|l| l.contains("serving /healthz /readyz /metrics"))
        {
            let addr = line
                .split("addr=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .expect("addr= in the log line");
            return addr.parse().expect("a socket address");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the operator never logged its HTTP address:\n{}",
            operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A plain HTTP/1.1 GET: `(status code, body)`.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: dualmesh\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    (code, body.to_string())
}

/// The value of one metric series (`name{labels}` exactly as exported).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Creates or replaces Secret `ns/name` with `data` (server-side apply as
/// field manager `test`), creating the namespace first.
pub async fn put_secret(client: &Client, ns: &str, name: &str, data: &[(&str, &str)]) {
    use k8s_openapi::ByteString;
    create_namespace(client, ns).await;
    let data: std::collections::BTreeMap<String, ByteString> = data
        .iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect();
    let body = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "data": data,
    });
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(&body),
        )
        .await
        .expect("apply Secret");
}

/// The Lease duration the leader-election tests give their replicas.
pub const LEASE: Duration = Duration::from_secs(4);

/// A replica with leader election (Lease [`LEASE`]) started as its own user
/// `dualmesh-<identity>`, so the audit log tells the replicas' writes apart.
pub fn replica(plane: &ControlPlane, identity: &str) -> Operator {
    let user = format!("dualmesh-{identity}");
    let kubeconfig = plane
        .user_kubeconfig(&user, &["system:masters"], &format!("{user}.kubeconfig"))
        .expect("kubeconfig");
    let lease = LEASE.as_secs().to_string();
    Operator::start(
        Path::new(env!("CARGO_BIN_EXE_dualmesh")),
        &kubeconfig,
        &[
            "--namespace",
            NS,
            "--log",
            LOG,
            "--listen",
            "[::1]:0",
            "--leader-elect",
            "--lease-duration-seconds",
            &lease,
            "--identity",
            identity,
        ],
        &plane.dir().join(format!("{user}.log")),
    )
    .expect("start dualmesh")
}

/// Who holds the `dualmesh` Lease (None also while the API server is away).
pub async fn holder(client: &Client) -> Option<String> {
    use k8s_openapi::api::coordination::v1::Lease;
    Api::<Lease>::namespaced(client.clone(), NS)
        .get_opt("dualmesh")
        .await
        .ok()??
        .spec?
        .holder_identity
}

/// Waits until `want` holds the Lease; returns how long that took.
pub async fn wait_holder(client: &Client, want: &str, within: Duration) -> Duration {
    let start = Instant::now();
    wait_for(&format!("Lease held by {want}"), within, || async {
        match holder(client).await {
            Some(h) if h == want => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    start.elapsed()
}

/// What dualmesh renders for `mc` under `policy` (both must be valid): the
/// expected content of what it publishes.
pub fn render(mc: &MeshCluster, policy: &DualStackPolicySpec) -> Rendered {
    let mc = validate_mesh_cluster(&mc.spec).expect("valid MeshCluster");
    let policy = validate_policy(policy).expect("valid policy");
    istio_operator::build(&mc, &policy)
}

/// The IstioOperator YAML a published ConfigMap holds ("" when none).
pub fn published_yaml(cm: &ConfigMap) -> String {
    cm.data
        .as_ref()
        .and_then(|d| d.get(CONFIG_MAP_KEY))
        .cloned()
        .unwrap_or_default()
}

/// IstioOperators (`install.istio.io/v1alpha1`) in [`ISTIO_NS`].
pub fn istio_operators(client: &Client) -> Api<DynamicObject> {
    let (group, version) = dualmesh::istio::API_VERSION
        .split_once('/')
        .expect("group/version");
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, dualmesh::istio::KIND),
        "istiooperators",
    );
    Api::namespaced_with(client.clone(), ISTIO_NS, &resource)
}

/// Key `key` of Secret `ns/name` as text; None when the Secret or the key
/// is absent (or the API server does not answer).
pub async fn secret_value(client: &Client, ns: &str, name: &str, key: &str) -> Option<String> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()??;
    let value = secret.data?.remove(key)?;
    Some(String::from_utf8_lossy(&value.0).into_owned())
}

// ---------------------------------------------------------------------------
// The Gloo Mesh relay pair a member gets by default (test values)
// ---------------------------------------------------------------------------

/// The relay root CA certificate (`relay-root-tls-secret`, key `ca.crt`).
pub const CA: &str =
    "-----BEGIN CERTIFICATE-----\nMIIBrelayROOTcaDATA0123456789\n-----END CERTIFICATE-----\n";
/// The relay identity token, and the one it is rotated to.
pub const TOKEN_1: &str = "relay-token-7f3a9c1e5b2d4f60";
pub const TOKEN_2: &str = "relay-token-rotated-0d9e8c7b6a5f";
pub const TOKEN_SECRET: &str = "relay-identity-token-secret";

/// The relay pair in the management cluster's `gloo-mesh`, the token being `token`.
pub async fn federation_sources(mgmt: &Client, token: &str) {
    put_secret(
        mgmt,
        "gloo-mesh",
        "relay-root-tls-secret",
        &[("ca.crt", CA)],
    )
    .await;
    put_secret(mgmt, "gloo-mesh", TOKEN_SECRET, &[("token", token)]).await;
}

/// Waits until `op` has exited, at most `within` (polled every 50 ms);
/// panics with its log tail if it still runs then.
pub async fn exit_status(op: &mut Operator, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = op.try_status() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the operator still runs after {within:?}:\n{}",
            op.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `kill <sig> <pid>`, which must succeed.
pub fn send_signal(pid: &str, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, pid])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// The status of every MeshCluster and DualStackPolicy, as one JSON text
/// (to search for what must not be there).
pub async fn all_statuses(client: &Client) -> String {
    let mcs = Api::<MeshCluster>::all(client.clone())
        .list(&Default::default())
        .await
        .expect("list MeshClusters");
    let policies = Api::<DualStackPolicy>::all(client.clone())
        .list(&Default::default())
        .await
        .expect("list DualStackPolicies");
    serde_json::to_string(&(
        mcs.items.into_iter().map(|m| m.status).collect::<Vec<_>>(),
        policies
            .items
            .into_iter()
            .map(|p| p.status)
            .collect::<Vec<_>>(),
    ))
    .expect("statuses serialize")
}
