//! Values files for Istio's own Helm charts (`base`, `istiod`, `cni`,
//! `gateway`, and `ztunnel` for the ambient profile), carrying the intent of
//! the IstioOperator dualmesh renders: the same mesh identity, dual-stack
//! switches, proxy metadata, hub, tag and revision. Pure.
//!
//! The values are written in the form the charts read: `pilot.*` for the
//! istiod chart and `cni.*` for the cni chart (both charts copy those
//! subtrees to their top level, and Sail's `spec.values` uses the same
//! form), top-level keys for the gateway and ztunnel charts.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::super::istio_operator::{self, Rendered as RenderedOperator};
use super::super::validate::{ValidMeshCluster, ValidPolicy, profile_for};
use crate::api::{InstallWith, IstioProfile};

/// The chart every values file is for, in install order.
pub const CHARTS: [&str; 5] = ["base", "istiod", "cni", "gateway", "ztunnel"];

/// One chart's values.
#[derive(Clone, Debug, PartialEq)]
pub struct ValuesFile {
    /// The chart's name (`Chart.yaml` `name`).
    pub chart: &'static str,
    pub values: Value,
    pub yaml: String,
}

impl ValuesFile {
    /// Its key in the published ConfigMap: `<chart>.yaml`.
    pub fn key(&self) -> String {
        format!("{}.yaml", self.chart)
    }
}

/// The values files of one MeshCluster, in [`CHARTS`] order.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    pub files: Vec<ValuesFile>,
    /// SHA-256 over every file's key and YAML, hex.
    pub hash: String,
    /// As in the IstioOperator: user keys dualmesh's values replaced.
    pub overridden_keys: Vec<String>,
}

impl Rendered {
    /// Every file as one YAML stream, as `dualmesh render --install Helm`
    /// prints it.
    pub fn stream(&self, header: &str) -> String {
        let mut out = String::new();
        for f in &self.files {
            out.push_str(&format!(
                "---\n# {header}: Helm values for Istio's {} chart ({})\n{}",
                f.chart,
                f.key(),
                f.yaml
            ));
        }
        out
    }
}

/// The istiod chart's values (also Sail's `Istio` `spec.values`, less the
/// keys Sail sets itself: see [`super::sail`]).
pub(super) fn istiod_values(mc: &ValidMeshCluster<'_>, io: &RenderedOperator) -> Value {
    let spec = &io.operator.spec;
    let global = &spec.values.global;
    let gateway = spec
        .components
        .ingress_gateways
        .first()
        .expect("dualmesh renders one gateway");
    let mut env: BTreeMap<String, String> = spec
        .components
        .pilot
        .k8s
        .env
        .iter()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect();
    env.extend(spec.values.pilot.env.clone());
    let mut pilot = json!({
        "cni": {"enabled": mc.spec.istio.cni.enabled || mc.spec.istio.profile == IstioProfile::Ambient},
        "ipFamilyPolicy": gateway.k8s.service.ip_family_policy,
        "ipFamilies": gateway.k8s.service.ip_families,
    });
    if !env.is_empty() {
        pilot["env"] = json!(env);
    }
    json!({
        "global": {
            "istioNamespace": global.istio_namespace,
            "meshID": global.mesh_id,
            "multiCluster": {"clusterName": global.multi_cluster.cluster_name},
            "network": global.network,
            "meshNetworks": global.mesh_networks,
        },
        "meshConfig": spec.mesh_config,
        "pilot": pilot,
    })
}

/// Where a chart reads the image hub and tag.
#[derive(Clone, Copy, PartialEq)]
enum Image {
    /// `global.hub`, `global.tag` (istiod, cni).
    Global,
    /// `hub`, `tag` (ztunnel).
    TopLevel,
    /// The chart runs no image of its own (base).
    None,
}

/// Adds hub, tag, profile and revision where the chart reads them.
fn common(values: &mut Value, mc: &ValidMeshCluster<'_>, image: Image) {
    let istio = &mc.spec.istio;
    match image {
        Image::Global => {
            values["global"]["hub"] = json!(istio.hub);
            values["global"]["tag"] = json!(istio.tag);
        }
        Image::TopLevel => {
            values["hub"] = json!(istio.hub);
            values["tag"] = json!(istio.tag);
        }
        Image::None => {}
    }
    let profile = profile_for(InstallWith::Helm, istio.profile).unwrap_or("");
    if !profile.is_empty() {
        values["profile"] = json!(profile);
    }
    // The base chart has no revision of its own (its `defaultRevision` is
    // a cluster-wide choice dualmesh leaves to the user).
    if let Some(rev) = istio.revision.as_ref().filter(|_| image != Image::None) {
        values["revision"] = json!(rev);
    }
}

fn file(chart: &'static str, values: Value) -> ValuesFile {
    let yaml = crate::yaml::to_string(&values);
    ValuesFile {
        chart,
        values,
        yaml,
    }
}

/// The gateway chart's values: the multi-network east-west gateway as
/// Istio's `gen-eastwest-gateway.sh` makes it (ports 15021, 15443, 15012,
/// 15017; `sni-dnat`; the network label), with the policy's families.
fn gateway_values(mc: &ValidMeshCluster<'_>, io: &RenderedOperator) -> Value {
    let gw = &mc.spec.ingress_gateway;
    let service = &io.operator.spec.components.ingress_gateways[0].k8s.service;
    let mut tls = json!({"name": "tls", "port": 15443, "targetPort": 15443, "protocol": "TCP"});
    if let Some(np) = service.ports.iter().find_map(|p| p.node_port) {
        tls["nodePort"] = json!(np);
    }
    let port = |name: &str, port: i32| json!({"name": name, "port": port, "targetPort": port, "protocol": "TCP"});
    let mut labels: Map<String, Value> = mc
        .gateway_selector
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    labels.insert("topology.istio.io/network".into(), json!(mc.spec.network));
    let mut values = json!({
        "name": gw.name,
        "labels": labels,
        "env": {
            "ISTIO_META_ROUTER_MODE": "sni-dnat",
            "ISTIO_META_REQUESTED_NETWORK_VIEW": mc.spec.network,
        },
        "service": {
            "type": service.type_,
            "ipFamilyPolicy": service.ip_family_policy,
            "ipFamilies": service.ip_families,
            "ports": [
                port("status-port", 15021),
                tls,
                port("tls-istiod", 15012),
                port("tls-webhook", 15017),
            ],
        },
    });
    if let Some(rev) = &mc.spec.istio.revision {
        values["revision"] = json!(rev);
    }
    values
}

/// The cni chart's values (also Sail's `IstioCNI` `spec.values`).
pub(super) fn cni_values(mc: &ValidMeshCluster<'_>) -> Value {
    let cni = &mc.spec.istio.cni;
    let mut values = json!({
        "cni": {
            "excludeNamespaces": cni.exclude_namespaces,
            "logging": {"level": cni.log_level.as_str()},
        },
    });
    if mc.spec.istio.profile == IstioProfile::Ambient {
        // Every DualStackPolicy has IPv6: ambient's redirection must cover it.
        values["cni"]["ambient"] = json!({"ipv6": true});
    }
    values
}

/// The ztunnel chart's values (also Sail's `ZTunnel` `spec.values.ztunnel`).
pub(super) fn ztunnel_values(mc: &ValidMeshCluster<'_>, io: &RenderedOperator) -> Value {
    let spec = &io.operator.spec;
    json!({
        "istioNamespace": spec.values.global.istio_namespace,
        "multiCluster": {"clusterName": spec.values.global.multi_cluster.cluster_name},
        "network": mc.spec.network,
        "meshConfig": {"defaultConfig": {"proxyMetadata": spec.mesh_config.default_config.proxy_metadata}},
        "env": {"IPV6_ENABLED": "true"},
    })
}

/// Whether the cluster runs the CNI agent (ambient always does).
pub fn cni_on(mc: &ValidMeshCluster<'_>) -> bool {
    mc.spec.istio.cni.enabled || mc.spec.istio.profile == IstioProfile::Ambient
}

/// Builds the values files for `mc` under `policy`.
pub fn build(mc: &ValidMeshCluster<'_>, policy: &ValidPolicy) -> Rendered {
    let io = istio_operator::build(mc, policy);
    let mut files = Vec::new();

    let mut base = json!({"global": {"istioNamespace": mc.spec.istio.namespace}});
    common(&mut base, mc, Image::None);
    files.push(file("base", base));

    let mut istiod = istiod_values(mc, &io);
    common(&mut istiod, mc, Image::Global);
    files.push(file("istiod", istiod));

    if cni_on(mc) {
        let mut cni = cni_values(mc);
        common(&mut cni, mc, Image::Global);
        files.push(file("cni", cni));
    }

    files.push(file("gateway", gateway_values(mc, &io)));

    if mc.spec.istio.profile == IstioProfile::Ambient {
        let mut ztunnel = ztunnel_values(mc, &io);
        common(&mut ztunnel, mc, Image::TopLevel);
        files.push(file("ztunnel", ztunnel));
    }

    let mut hasher = Sha256::new();
    for f in &files {
        hasher.update(f.key().as_bytes());
        hasher.update(b"\n");
        hasher.update(f.yaml.as_bytes());
    }
    Rendered {
        files,
        hash: format!("{:x}", hasher.finalize()),
        overridden_keys: io.overridden_keys,
    }
}
