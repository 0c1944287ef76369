//! MeshCluster checks: names and label values, the Istio settings, the
//! gateway (ports, Pod selector) and the Secrets to sync.

use std::collections::{BTreeMap, BTreeSet};

use super::Problem;
use super::host_port::{HostPort, parse_host_port};
use super::names::{
    is_dns1123_label, is_dns1123_subdomain, is_env_name, is_label_key, is_label_value,
    is_secret_key,
};
use crate::api::{MeshClusterSpec, SecretLocation};

/// A MeshCluster spec that passed every check, with its defaults resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidMeshCluster<'a> {
    pub spec: &'a MeshClusterSpec,
    /// The gateway's namespace (default: the Istio namespace).
    pub gateway_namespace: String,
    /// Labels selecting the gateway Pods (default `app: <gateway name>`).
    pub gateway_selector: BTreeMap<String, String>,
    /// The Gloo Mesh agent, parsed.
    pub gloo_agent: Option<HostPort>,
}

/// Checks a MeshCluster spec (everything the schema checks, for offline use,
/// plus duplicate sync targets, and on the local cluster a sync onto its own
/// source).
pub fn validate_mesh_cluster(spec: &MeshClusterSpec) -> Result<ValidMeshCluster<'_>, Vec<Problem>> {
    let mut out = Vec::new();
    for (field, value) in [
        ("spec.clusterName", &spec.cluster_name),
        ("spec.network", &spec.network),
        ("spec.meshID", &spec.mesh_id),
    ] {
        if value.is_empty() {
            out.push(Problem::new(field, "must not be empty"));
        } else if !is_label_value(value) {
            out.push(Problem::new(
                field,
                format!("{value:?} must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"),
            ));
        }
    }
    let mut subdomain = |field: &str, value: &str| {
        if !is_dns1123_subdomain(value) {
            out.push(Problem::new(
                field,
                format!(
                    "{value:?} is not a DNS-1123 name (lowercase letters, digits, '-' and '.')"
                ),
            ));
        }
    };
    subdomain(
        "spec.dualStackPolicyRef.name",
        &spec.dual_stack_policy_ref.name,
    );
    if let Some(k) = &spec.kubeconfig_secret_ref {
        subdomain("spec.kubeconfigSecretRef.name", &k.name);
    }
    subdomain("spec.istio.operatorName", &spec.istio.operator_name);
    if let Some(k) = &spec.kubeconfig_secret_ref
        && !is_secret_key(&k.key)
    {
        out.push(Problem::new(
            "spec.kubeconfigSecretRef.key",
            format!("{:?} is not a Secret key", k.key),
        ));
    }
    let mut label = |field: &str, value: &str| {
        if !is_dns1123_label(value) {
            out.push(Problem::new(
                field,
                format!("{value:?} is not a DNS-1123 label (lowercase letters, digits and '-')"),
            ));
        }
    };
    label("spec.istio.namespace", &spec.istio.namespace);
    label("spec.ingressGateway.name", &spec.ingress_gateway.name);
    if let Some(ns) = &spec.ingress_gateway.namespace {
        label("spec.ingressGateway.namespace", ns);
    }
    if let Some(r) = &spec.istio.revision {
        label("spec.istio.revision", r);
    }
    for (i, ns) in spec.istio.cni.exclude_namespaces.iter().enumerate() {
        label(&format!("spec.istio.cni.excludeNamespaces[{i}]"), ns);
    }
    if spec.istio.hub.is_empty() || spec.istio.hub.chars().any(char::is_whitespace) {
        out.push(Problem::new(
            "spec.istio.hub",
            "must be a registry such as docker.io/istio",
        ));
    }
    if spec.istio.tag.is_empty()
        || spec
            .istio
            .tag
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || "_.-".contains(c)))
    {
        out.push(Problem::new(
            "spec.istio.tag",
            "must be an image tag such as 1.28.0",
        ));
    }
    for (field, map) in [
        ("spec.istio.pilotEnv", &spec.istio.pilot_env),
        ("spec.istio.proxyMetadata", &spec.istio.proxy_metadata),
    ] {
        for key in map.keys().filter(|k| !is_env_name(k)) {
            out.push(Problem::new(
                field,
                format!("{key:?} is not an environment variable name"),
            ));
        }
    }
    let gloo_agent = spec.istio.gloo_mesh.as_ref().and_then(|g| {
        parse_host_port(&g.agent_address)
            .map_err(|e| out.push(Problem::new("spec.istio.glooMesh.agentAddress", e)))
            .ok()
    });
    let gw = &spec.ingress_gateway;
    if let Some(np) = gw.tls_node_port {
        if !(30000..=32767).contains(&np) {
            out.push(Problem::new(
                "spec.ingressGateway.tlsNodePort",
                format!("{np} is outside the NodePort range 30000-32767"),
            ));
        } else if gw.service_type == crate::api::ServiceType::ClusterIP {
            out.push(Problem::new(
                "spec.ingressGateway.tlsNodePort",
                "needs serviceType NodePort or LoadBalancer",
            ));
        }
    }
    if !(1..=65535).contains(&gw.network_gateway_port) {
        out.push(Problem::new(
            "spec.ingressGateway.networkGatewayPort",
            "must be a port (1 to 65535)",
        ));
    }
    check_pod_selector(&gw.pod_selector, &mut out);
    super::install::check_install(&spec.istio, &mut out);
    if let Some(fed) = &spec.federation {
        let mut seen: BTreeSet<&SecretLocation> = BTreeSet::new();
        for (i, s) in fed.secrets.iter().enumerate() {
            if !seen.insert(&s.target) {
                out.push(Problem::new(
                    format!("spec.federation.secrets[{i}].target"),
                    format!(
                        "{}/{} is already the target of an earlier entry",
                        s.target.namespace, s.target.name
                    ),
                ));
            }
            if spec.kubeconfig_secret_ref.is_none() && s.source == s.target {
                out.push(Problem::new(
                    format!("spec.federation.secrets[{i}].target"),
                    "is the source itself: on the cluster dualmesh runs in (no kubeconfigSecretRef) the copy would overwrite its source; choose another namespace or name",
                ));
            }
            for (side, loc) in [("source", &s.source), ("target", &s.target)] {
                if !is_dns1123_label(&loc.namespace) {
                    out.push(Problem::new(
                        format!("spec.federation.secrets[{i}].{side}.namespace"),
                        "is not a DNS-1123 label",
                    ));
                }
                if !is_dns1123_subdomain(&loc.name) {
                    out.push(Problem::new(
                        format!("spec.federation.secrets[{i}].{side}.name"),
                        "is not a DNS-1123 name",
                    ));
                }
            }
            let mut targets = BTreeSet::new();
            for (j, k) in s.keys.iter().enumerate() {
                let to = k.to.as_deref().unwrap_or(&k.from);
                for (which, v) in [("from", k.from.as_str()), ("to", to)] {
                    if !is_secret_key(v) {
                        out.push(Problem::new(
                            format!("spec.federation.secrets[{i}].keys[{j}].{which}"),
                            format!("{v:?} is not a Secret key"),
                        ));
                    }
                }
                if !targets.insert(to) {
                    out.push(Problem::new(
                        format!("spec.federation.secrets[{i}].keys[{j}]"),
                        format!("two keys are copied to {to:?}"),
                    ));
                }
            }
        }
    }
    if !out.is_empty() {
        out.sort();
        out.dedup();
        return Err(out);
    }
    let gateway_selector = if gw.pod_selector.is_empty() {
        BTreeMap::from([("app".to_string(), gw.name.clone())])
    } else {
        gw.pod_selector.clone()
    };
    Ok(ValidMeshCluster {
        spec,
        gateway_namespace: gw
            .namespace
            .clone()
            .unwrap_or_else(|| spec.istio.namespace.clone()),
        gateway_selector,
        gloo_agent,
    })
}

/// The gateway's Pod selector becomes a label selector the API server
/// parses: a key or value outside the label syntax would be refused there,
/// or (a value with ',') select other Pods than the user meant.
fn check_pod_selector(selector: &BTreeMap<String, String>, out: &mut Vec<Problem>) {
    let field = "spec.ingressGateway.podSelector";
    for (key, value) in selector {
        if !is_label_key(key) {
            out.push(Problem::new(
                field,
                format!("{key:?} is not a label key: use an optional DNS-1123 prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, e.g. app.kubernetes.io/name"),
            ));
        }
        if !(value.is_empty() || is_label_value(value)) {
            out.push(Problem::new(
                field,
                format!("the value {value:?} of {key:?} is not a label value: use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit (no spaces, ',', '=' or '!')"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_sync_onto_its_own_source_is_refused() {
        let yaml = include_str!("../../../examples/meshcluster-beta.yaml");
        let mut spec = serde_saphyr::from_str::<crate::api::MeshCluster>(yaml)
            .unwrap()
            .spec;
        // On a member the relay pair keeps its names: that is the point.
        assert!(validate_mesh_cluster(&spec).is_ok());
        spec.kubeconfig_secret_ref = None;
        let problems: Vec<_> = validate_mesh_cluster(&spec)
            .unwrap_err()
            .iter()
            .map(Problem::to_string)
            .collect();
        assert_eq!(
            problems,
            [0, 1].map(|i| format!(
                "spec.federation.secrets[{i}].target: is the source itself: on the cluster dualmesh runs in (no kubeconfigSecretRef) the copy would overwrite its source; choose another namespace or name"
            ))
        );
    }

    fn alpha() -> MeshClusterSpec {
        let yaml = include_str!("../../../examples/meshcluster-alpha.yaml");
        serde_saphyr::from_str::<crate::api::MeshCluster>(yaml)
            .unwrap()
            .spec
    }

    #[test]
    fn pod_selector_keys_and_values_must_be_labels() {
        let mut spec = alpha();
        spec.ingress_gateway.pod_selector = BTreeMap::from([
            ("tier x".to_string(), "gw".to_string()),
            ("app".to_string(), "x,tier!=y".to_string()),
            ("istio.io/rev".to_string(), String::new()),
        ]);
        let problems: Vec<_> = validate_mesh_cluster(&spec)
            .unwrap_err()
            .iter()
            .map(Problem::to_string)
            .collect();
        assert_eq!(
            problems,
            [
                "spec.ingressGateway.podSelector: \"tier x\" is not a label key: use an optional DNS-1123 prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, e.g. app.kubernetes.io/name",
                "spec.ingressGateway.podSelector: the value \"x,tier!=y\" of \"app\" is not a label value: use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit (no spaces, ',', '=' or '!')",
            ]
        );
    }

    #[test]
    fn a_valid_pod_selector_is_the_gateway_selector() {
        let mut spec = alpha();
        let selector = BTreeMap::from([
            (
                "app.kubernetes.io/name".to_string(),
                "east-west".to_string(),
            ),
            ("istio.io/rev".to_string(), String::new()),
        ]);
        spec.ingress_gateway.pod_selector = selector.clone();
        assert_eq!(
            validate_mesh_cluster(&spec).unwrap().gateway_selector,
            selector
        );
    }
}
