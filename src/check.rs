//! `dualmesh check`: fetch what a cluster has (read-only, plus one
//! server-side dry run) into [`desired::check::Observed`], run the pure
//! checks, print them. Exit 0 when nothing FAILs, 1 when something does, 2
//! on usage or connection errors. docs/check.md lists the RBAC it needs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::api::{ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind, Status};
use kube::{Api, Client, Config, ResourceExt};
use serde_json::json;

use crate::api::DualStackPolicy;
use crate::desired::check::{
    self, ExternalIpsProbe, Istiod, NodeFacts, Observed, ServiceCidr, parse_warning,
};
use crate::desired::gateway_addresses::select;
use crate::desired::gateway_service::{gateway_pod, node_addresses};
use crate::desired::validate::{ValidPolicy, summarize, validate_policy};

/// Text table or JSON document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Which policy to check against.
#[derive(Clone, Debug)]
pub enum PolicySource {
    /// None: both families, default rules.
    None,
    /// A YAML file holding one DualStackPolicy.
    File(PathBuf),
    /// A DualStackPolicy in the cluster.
    Named(String),
}

/// Everything `dualmesh check` was told.
#[derive(Clone, Debug)]
pub struct Options {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub policy: PolicySource,
    pub format: Format,
    /// Where the dry-run Service is created (must exist).
    pub namespace: String,
    /// Where istiod runs.
    pub istio_namespace: String,
    /// The gateway Pods: namespace and `key=value` labels.
    pub gateway_namespace: String,
    pub gateway_selector: String,
}

/// Why a check could not run (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Policy { path: String, message: String },
    #[error("failed to load the kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("failed to {what}: {source}")]
    Kube {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
}

fn kube(what: &'static str) -> impl FnOnce(kube::Error) -> CheckError {
    move |source| CheckError::Kube { what, source }
}

/// Runs the check on a new runtime; prints the report; the exit code.
pub fn main(options: Options) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(&options)) {
        Ok(report) => {
            match options.format {
                Format::Text => print!("{}", check::text(&report)),
                Format::Json => print!("{}", check::json(&report)),
            }
            ExitCode::from(report.exit_code())
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(options: &Options) -> Result<check::Report, CheckError> {
    // A bad file is a usage error: say so before connecting anywhere.
    let file_policy = match &options.policy {
        PolicySource::File(path) => Some(read_policy(path)?),
        _ => None,
    };
    let client = connect(options).await?;
    let version = client
        .apiserver_version()
        .await
        .map_err(kube("connect to the API server"))?;
    let policy = match (&options.policy, file_policy) {
        (_, Some(p)) => Some(p),
        (PolicySource::Named(name), None) => Some(cluster_policy(&client, name).await?),
        _ => None,
    };
    let mut observed = fetch(&client, options, policy.as_ref().map(|(_, p)| p)).await?;
    observed.api_server_version = Some(version.git_version);
    Ok(check::check(
        &observed,
        policy.as_ref().map(|(n, p)| (n.as_str(), p)),
    ))
}

async fn connect(options: &Options) -> Result<Client, CheckError> {
    let kc_options = KubeConfigOptions {
        context: options.context.clone(),
        ..Default::default()
    };
    let config = match (&options.kubeconfig, &options.context) {
        (Some(path), _) => {
            let kc =
                Kubeconfig::read_from(path).map_err(|e| CheckError::Kubeconfig(e.to_string()))?;
            Config::from_custom_kubeconfig(kc, &kc_options).await
        }
        (None, Some(_)) => Config::from_kubeconfig(&kc_options).await,
        (None, None) => {
            return Client::try_default()
                .await
                .map_err(kube("connect to the API server"));
        }
    }
    .map_err(|e| CheckError::Kubeconfig(e.to_string()))?;
    Client::try_from(config).map_err(kube("build a client"))
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> CheckError {
    CheckError::Policy {
        path: path.into(),
        message: message.into(),
    }
}

/// The one DualStackPolicy in `path`, validated.
fn read_policy(path: &Path) -> Result<(String, ValidPolicy), CheckError> {
    let text = std::fs::read_to_string(path).map_err(|source| CheckError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let shown = path.display().to_string();
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&text).map_err(|e| invalid(&shown, e.to_string()))?;
    let mut found: Vec<DualStackPolicy> = Vec::new();
    for doc in docs {
        if doc.get("kind").and_then(|k| k.as_str()) == Some("DualStackPolicy") {
            found.push(serde_json::from_value(doc).map_err(|e| invalid(&shown, e.to_string()))?);
        }
    }
    let [policy] = <[DualStackPolicy; 1]>::try_from(found).map_err(|found| {
        invalid(
            &shown,
            format!("holds {} DualStackPolicies; give exactly one", found.len()),
        )
    })?;
    valid(&shown, policy)
}

fn valid(where_: &str, policy: DualStackPolicy) -> Result<(String, ValidPolicy), CheckError> {
    let name = policy.name_any();
    validate_policy(&policy.spec)
        .map(|p| (name.clone(), p))
        .map_err(|problems| {
            invalid(
                where_,
                format!("DualStackPolicy {name}: {}", summarize(&problems)),
            )
        })
}

async fn cluster_policy(client: &Client, name: &str) -> Result<(String, ValidPolicy), CheckError> {
    let api: Api<DualStackPolicy> = Api::all(client.clone());
    match api
        .get_opt(name)
        .await
        .map_err(kube("read the DualStackPolicy"))?
    {
        Some(p) => valid(&format!("DualStackPolicy {name}"), p),
        None => Err(invalid(
            format!("--policy {name}"),
            "no such DualStackPolicy in the cluster",
        )),
    }
}

/// Every object of `api`, 500 at a time.
async fn list_all<K>(api: &Api<K>, lp: ListParams, what: &'static str) -> Result<Vec<K>, CheckError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut lp = lp.limit(500);
    loop {
        let page = api.list(&lp).await.map_err(kube(what))?;
        out.extend(page.items);
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => return Ok(out),
        }
    }
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

async fn fetch(
    client: &Client,
    options: &Options,
    policy: Option<&ValidPolicy>,
) -> Result<Observed, CheckError> {
    let mut observed = Observed::default();

    let cidrs: Api<ServiceCIDR> = Api::all(client.clone());
    match list_all(&cidrs, ListParams::default(), "list ServiceCIDRs").await {
        Ok(list) => {
            let list = ServiceCidr::list(list.iter());
            observed.service_cidrs = Some(list);
        }
        Err(CheckError::Kube { source, .. }) if not_found(&source) => {
            observed.service_cidr_api_missing = true;
        }
        Err(e) => return Err(e),
    }

    let nodes: Api<Node> = Api::all(client.clone());
    let mut nodes: Vec<NodeFacts> = list_all(&nodes, ListParams::default(), "list Nodes")
        .await?
        .iter()
        .map(|n| NodeFacts {
            name: n.name_any(),
            pod_cidrs: n
                .spec
                .as_ref()
                .and_then(|s| s.pod_cidrs.clone())
                .unwrap_or_default(),
            addresses: node_addresses(n),
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));

    let pods: Api<Pod> = Api::namespaced(client.clone(), &options.gateway_namespace);
    let lp = ListParams::default().labels(&options.gateway_selector);
    let pods: Vec<_> = list_all(&pods, lp, "list the gateway Pods")
        .await?
        .iter()
        .map(gateway_pod)
        .collect();
    let by_name = nodes
        .iter()
        .map(|n| (n.name.clone(), n.addresses.clone()))
        .collect();
    let fallback = check::default_policy();
    let selection = select(&pods, &by_name, policy.unwrap_or(&fallback));
    let mut on: Vec<String> = selection.nodes;
    on.extend(selection.missing_nodes);
    on.sort();
    observed.gateway = Some((
        format!(
            "{} in {}",
            options.gateway_selector, options.gateway_namespace
        ),
        on,
    ));
    observed.nodes = Some(nodes);

    observed.external_ips = Some(probe_external_ips(client, &options.namespace).await?);
    observed.istiod = Some(istiod(client, &options.istio_namespace).await?);
    observed.sail_istio = sail_istio(client).await?;
    Ok(observed)
}

/// A server-side dry run (`dryRun=All`: nothing is stored) of a Service
/// with one externalIP (a documentation address), keeping the answer's
/// `Warning` headers, which kube's typed `Api` does not expose.
async fn probe_external_ips(
    client: &Client,
    namespace: &str,
) -> Result<ExternalIpsProbe, CheckError> {
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"generateName": "dualmesh-check-"},
        "spec": {
            "ports": [{"name": "tls", "port": 15443}],
            "externalIPs": ["2001:db8::1"],
        },
    });
    let params = PostParams {
        dry_run: true,
        field_manager: Some(crate::api::labels::FIELD_MANAGER.into()),
    };
    let url = format!("/api/v1/namespaces/{namespace}/services");
    let body = serde_json::to_vec(&service).expect("a Service serializes");
    let request = kube::core::Request::new(url)
        .create(&params, body)
        .map_err(|e| kube("build the externalIPs dry run")(kube::Error::BuildRequest(e)))?;
    let response = client
        .send(request.map(kube::client::Body::from))
        .await
        .map_err(kube("send the externalIPs dry run"))?;
    let warning = response
        .headers()
        .get_all(http::header::WARNING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(parse_warning)
        .filter(|w| w.to_lowercase().contains("externalip"))
        .collect::<Vec<_>>();
    let warning = (!warning.is_empty()).then(|| warning.join("; "));
    let code = response.status().as_u16();
    if response.status().is_success() {
        return Ok(ExternalIpsProbe {
            accepted: true,
            refused: None,
            warning,
        });
    }
    let bytes = response
        .into_body()
        .collect_bytes()
        .await
        .unwrap_or_default();
    let status: Option<Status> = serde_json::from_slice(&bytes).ok();
    let (reason, message) = status
        .map(|s| (s.reason, s.message))
        .unwrap_or_else(|| ("Refused".into(), String::new()));
    if code == 404 {
        return Err(CheckError::Policy {
            path: format!("--namespace {namespace}"),
            message: "namespace not found: name one that exists for the externalIPs dry run".into(),
        });
    }
    Ok(ExternalIpsProbe {
        accepted: false,
        refused: Some((code, reason, message)),
        warning,
    })
}

/// The istiod Deployment (label `app=istiod`; the first by name when there
/// are revisions), None when there is none.
async fn istiod(client: &Client, namespace: &str) -> Result<Option<Istiod>, CheckError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let mut found = list_all(
        &api,
        ListParams::default().labels("app=istiod"),
        "list istiod Deployments",
    )
    .await?;
    found.sort_by_key(|d| d.name_any());
    let Some(d) = found.into_iter().next() else {
        return Ok(None);
    };
    let containers = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    let container = containers
        .iter()
        .find(|c| c.name == "discovery")
        .or(containers.first());
    Ok(Some(Istiod {
        deployment: format!("{namespace}/{}", d.name_any()),
        image: container.and_then(|c| c.image.clone()).unwrap_or_default(),
        dual_stack_env: container
            .and_then(|c| c.env.as_ref())
            .and_then(|env| env.iter().find(|e| e.name == "ISTIO_DUAL_STACK"))
            .map(|e| e.value.clone().unwrap_or_default()),
    }))
}

/// Sail's `Istio` resources (sailoperator.io/v1), when its CRD is installed.
async fn sail_istio(client: &Client) -> Result<Vec<(String, String)>, CheckError> {
    let gvk = GroupVersionKind::gvk("sailoperator.io", "v1", "Istio");
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk));
    match list_all(&api, ListParams::default(), "list Sail Istio resources").await {
        Ok(list) => {
            let mut out: Vec<(String, String)> = list
                .iter()
                .map(|i| {
                    let v = i.data["spec"]["version"].as_str().unwrap_or_default();
                    (i.name_any(), v.to_string())
                })
                .collect();
            out.sort();
            Ok(out)
        }
        Err(CheckError::Kube { source, .. }) if not_found(&source) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}
