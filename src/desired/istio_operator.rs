//! Builds a cluster's IstioOperator from a validated MeshCluster and its
//! validated DualStackPolicy. Pure.
//!
//! Precedence of `proxyMetadata` and istiod env: the user's extra entries are
//! merged first, then the keys dualmesh owns are set over them
//! (`ISTIO_DUAL_STACK`, `ISTIO_META_DNS_CAPTURE`, `ISTIO_META_DNS_AUTO_ALLOCATE`,
//! `GLOO_MESH_CLUSTER_NAME`, and `ISTIO_MULTIROOT_MESH` with `spec.trust`):
//! dualmesh wins, and the keys it overrode are
//! returned so the status can say so.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::validate::{ValidMeshCluster, ValidPolicy};
use crate::istio::*;

pub use crate::api::labels::{MANAGED_BY, MESH_CLUSTER_LABEL};

/// Proxy metadata and env keys dualmesh sets itself.
pub const OWNED_KEYS: [&str; 5] = [
    "ISTIO_DUAL_STACK",
    "ISTIO_META_DNS_CAPTURE",
    "ISTIO_META_DNS_AUTO_ALLOCATE",
    "GLOO_MESH_CLUSTER_NAME",
    MULTIROOT,
];

/// Istio's multi-root trust switch (istiod env and proxy metadata): set
/// whenever `spec.trust` is, so a root rotation ([`super::trust::rotation`])
/// needs no istiod restart of its own.
pub const MULTIROOT: &str = "ISTIO_MULTIROOT_MESH";

/// The one ingress gateway key of Istio's `values.gateways`.
pub const INGRESS_VALUES_KEY: &str = "istio-ingressgateway";

/// A rendered IstioOperator.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    pub operator: IstioOperator,
    /// The YAML, as published and as `dualmesh render` prints it.
    pub yaml: String,
    /// SHA-256 of `yaml`, hex.
    pub hash: String,
    /// User-supplied keys that dualmesh's own values replaced, sorted.
    pub overridden_keys: Vec<String>,
}

fn t(b: bool) -> String {
    b.to_string()
}

/// Builds the IstioOperator for `mc` under `policy`.
pub fn build(mc: &ValidMeshCluster<'_>, policy: &ValidPolicy) -> Rendered {
    let spec = mc.spec;
    let istio = &spec.istio;
    let gw = &spec.ingress_gateway;
    let dual = policy.is_dual_stack();
    let mut overridden = Vec::new();

    // proxyMetadata: the user's extras, then what dualmesh owns.
    let mut proxy_metadata: BTreeMap<String, String> = istio.proxy_metadata.clone();
    let own = |map: &mut BTreeMap<String, String>,
               key: &str,
               value: String,
               overridden: &mut Vec<String>| {
        if let Some(old) = map.insert(key.to_string(), value.clone())
            && old != value
        {
            overridden.push(key.to_string());
        }
    };
    own(
        &mut proxy_metadata,
        "ISTIO_META_DNS_CAPTURE",
        t(istio.dns.capture),
        &mut overridden,
    );
    own(
        &mut proxy_metadata,
        "ISTIO_META_DNS_AUTO_ALLOCATE",
        t(istio.dns.auto_allocate),
        &mut overridden,
    );
    if istio.gloo_mesh.is_some() {
        own(
            &mut proxy_metadata,
            "GLOO_MESH_CLUSTER_NAME",
            spec.cluster_name.clone(),
            &mut overridden,
        );
    }
    if dual {
        own(
            &mut proxy_metadata,
            "ISTIO_DUAL_STACK",
            t(true),
            &mut overridden,
        );
    } else if proxy_metadata.remove("ISTIO_DUAL_STACK").is_some() {
        // A single-family mesh must not run Istio's dual-stack code paths.
        overridden.push("ISTIO_DUAL_STACK".to_string());
    }

    let multiroot = spec.trust.is_some();
    if multiroot {
        own(&mut proxy_metadata, MULTIROOT, t(true), &mut overridden);
    }
    let mut pilot_env_values = BTreeMap::new();
    if dual {
        pilot_env_values.insert("ISTIO_DUAL_STACK".to_string(), t(true));
    }
    if multiroot {
        pilot_env_values.insert(MULTIROOT.to_string(), t(true));
    }
    let mut pilot_k8s_env: Vec<EnvVar> = istio
        .pilot_env
        .iter()
        .filter(|(k, _)| {
            let owned = k.as_str() == "ISTIO_DUAL_STACK" || (multiroot && k.as_str() == MULTIROOT);
            if owned {
                overridden.push((*k).clone());
            }
            !owned
        })
        .map(|(k, v)| EnvVar {
            name: k.clone(),
            value: v.clone(),
        })
        .collect();
    pilot_k8s_env.sort();

    let families: Vec<String> = policy
        .families
        .iter()
        .map(|f| f.as_str().to_string())
        .collect();
    let family_policy = policy.family_policy.as_str().to_string();
    let agent = mc.gloo_agent.as_ref().map(|a| RemoteService {
        address: a.to_string(),
    });

    let mut ports = vec![
        ServicePort {
            name: "http2".into(),
            port: 80,
            target_port: 8080,
            node_port: None,
        },
        ServicePort {
            name: "https".into(),
            port: 443,
            target_port: 8443,
            node_port: None,
        },
        ServicePort {
            name: "tls".into(),
            port: 15443,
            target_port: 15443,
            node_port: None,
        },
    ];
    if gw.service_type != crate::api::ServiceType::ClusterIP {
        ports[2].node_port = Some(gw.tls_node_port.unwrap_or(32443));
    }

    let registry_service_name = format!("{}.{}.svc.cluster.local", gw.name, mc.gateway_namespace);
    let operator = IstioOperator {
        api_version: API_VERSION.to_string(),
        kind: KIND.to_string(),
        metadata: Metadata {
            name: istio.operator_name.clone(),
            namespace: istio.namespace.clone(),
            labels: BTreeMap::from([(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string())]),
        },
        spec: IstioOperatorSpec {
            profile: istio.profile.as_str().to_string(),
            hub: istio.hub.clone(),
            tag: istio.tag.clone(),
            revision: istio.revision.clone(),
            mesh_config: MeshConfig {
                access_log_file: istio.access_log_file.clone(),
                enable_auto_mtls: istio.enable_auto_mtls,
                default_config: ProxyConfig {
                    envoy_metrics_service: agent.clone(),
                    envoy_access_log_service: agent,
                    proxy_metadata,
                },
            },
            components: Components {
                cni: Enabled {
                    enabled: istio.cni.enabled,
                },
                ingress_gateways: vec![GatewayComponent {
                    name: gw.name.clone(),
                    namespace: (mc.gateway_namespace != istio.namespace)
                        .then(|| mc.gateway_namespace.clone()),
                    enabled: true,
                    label: BTreeMap::from([(
                        "topology.istio.io/network".to_string(),
                        spec.network.clone(),
                    )]),
                    k8s: GatewayK8s {
                        env: vec![
                            EnvVar {
                                name: "ISTIO_META_ROUTER_MODE".into(),
                                value: "sni-dnat".into(),
                            },
                            EnvVar {
                                name: "ISTIO_META_REQUESTED_NETWORK_VIEW".into(),
                                value: spec.network.clone(),
                            },
                        ],
                        service: GatewayService {
                            type_: gw.service_type.as_str().to_string(),
                            ip_family_policy: family_policy.clone(),
                            ip_families: families.clone(),
                            ports,
                        },
                    },
                }],
                pilot: PilotComponent {
                    k8s: PilotK8s { env: pilot_k8s_env },
                },
            },
            values: Values {
                global: GlobalValues {
                    mesh_id: spec.mesh_id.clone(),
                    multi_cluster: MultiCluster {
                        cluster_name: spec.cluster_name.clone(),
                    },
                    network: spec.network.clone(),
                    mesh_networks: BTreeMap::from([(
                        spec.network.clone(),
                        MeshNetwork {
                            endpoints: vec![NetworkEndpoint {
                                from_registry: spec.cluster_name.clone(),
                            }],
                            gateways: vec![NetworkGateway {
                                registry_service_name,
                                port: gw.network_gateway_port,
                            }],
                        },
                    )]),
                    istio_namespace: istio.namespace.clone(),
                    pilot_cert_provider: "istiod".to_string(),
                },
                pilot: PilotValues {
                    env: pilot_env_values,
                },
                cni: CniValues {
                    exclude_namespaces: istio.cni.exclude_namespaces.clone(),
                    log_level: istio.cni.log_level.as_str().to_string(),
                },
                // Istio's values have one ingress entry, whatever the
                // gateway's name: `gateways.istio-ingressgateway`
                // (GatewaysConfig has no other ingress key; istioctl
                // refuses one). Every ingress gateway component reads it;
                // the component's own k8s.service sets the same families.
                gateways: BTreeMap::from([(
                    INGRESS_VALUES_KEY.to_string(),
                    GatewayValues {
                        ip_family_policy: family_policy,
                        ip_families: families,
                    },
                )]),
            },
        },
    };
    let yaml = crate::yaml::to_string(&operator);
    let hash = format!("{:x}", Sha256::digest(yaml.as_bytes()));
    overridden.sort();
    overridden.dedup();
    Rendered {
        operator,
        yaml,
        hash,
        overridden_keys: overridden,
    }
}
