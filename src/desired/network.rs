//! The network topology Istio reads from labels: the Istio namespace
//! labelled `topology.istio.io/network=<network>` (the network of the
//! cluster's workloads, read by istiod and the sidecar injector). Pure: the
//! controller reads the namespace's metadata, this decides the write. (The
//! gateway Service's label is part of its write, [`super::gateway_service`].)
//! And the `cross-network-gateway` Gateway of Istio's `expose-services.yaml`
//! that makes the gateway pass mTLS traffic from other networks through.

use std::collections::BTreeMap;

use kube::api::ObjectMeta;
use serde_json::{Value, json};

use super::conditions::Found;
use super::publish::{Current, Foreign, Owner, Write, decide};
use crate::api::conditions::{self as types, reason};
use crate::api::labels::{NETWORK_LABEL, OWNER_ANNOTATION};

/// The Gateway's name (Istio's samples/multicluster/expose-services.yaml).
pub const CROSS_NETWORK_GATEWAY: &str = "cross-network-gateway";

/// The Gateway's spec: port 15443, TLS `AUTO_PASSTHROUGH`, hosts `*.local`,
/// on the gateway Pods `selector` picks.
pub fn cross_network_gateway_spec(selector: &BTreeMap<String, String>) -> Value {
    json!({
        "selector": selector,
        "servers": [{
            "port": { "number": 15443, "name": "tls", "protocol": "TLS" },
            "tls": { "mode": "AUTO_PASSTHROUGH" },
            "hosts": ["*.local"],
        }],
    })
}

/// The write of the Gateway in `namespace` over what was read (`current`:
/// its metadata and spec); Err when a Gateway of that name is not ours.
pub fn cross_network_gateway(
    owner: &Owner,
    namespace: &str,
    selector: &BTreeMap<String, String>,
    current: Option<Current<'_>>,
) -> Result<Write, Foreign> {
    let spec = cross_network_gateway_spec(selector);
    let labels = owner.labels();
    let annotations = BTreeMap::from([(OWNER_ANNOTATION.to_string(), owner.key.clone())]);
    let body = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {
            "name": CROSS_NETWORK_GATEWAY,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    });
    decide(
        "Gateway",
        format!("{namespace}/{CROSS_NETWORK_GATEWAY}"),
        owner,
        current,
        body,
        &labels,
        &annotations,
        &spec,
    )
}

/// The `CrossNetworkGatewayApplied` condition once the Gateway is current.
pub fn cross_network_applied(namespace: &str) -> Found {
    Found::ok(
        types::CROSS_NETWORK_GATEWAY_APPLIED,
        reason::GATEWAY_APPLIED,
        format!(
            "Gateway {namespace}/{CROSS_NETWORK_GATEWAY} passes port 15443 through (AUTO_PASSTHROUGH, *.local)"
        ),
    )
}

/// The condition where Istio's `networking.istio.io` API is not served.
pub fn cross_network_no_crds() -> Found {
    Found::fail(
        types::CROSS_NETWORK_GATEWAY_APPLIED,
        reason::ISTIO_CRDS_MISSING,
        "networking.istio.io Gateways are not served: Istio's base chart installs their CRD; dualmesh applies the Gateway when it is there",
    )
}

/// The write that makes namespace `meta` (as read) carry the network label
/// `network`: only that label, applied with the resourceVersion read;
/// nothing when it already does, or when it holds the network of another
/// MeshCluster of the same cluster and namespace (`claimed`): two of them
/// would flip it back and forth forever; the first one keeps it.
pub fn namespace_label(meta: &ObjectMeta, network: &str, claimed: &[String]) -> Write {
    let held = meta.labels.as_ref().and_then(|l| l.get(NETWORK_LABEL));
    if held.map(String::as_str) == Some(network) || held.is_some_and(|h| claimed.contains(h)) {
        return Write::Keep;
    }
    Write::Apply(json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": meta.name,
            "resourceVersion": meta.resource_version,
            "labels": {NETWORK_LABEL: network},
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner {
            key: "dualmesh-system/alpha".into(),
            name: "alpha".into(),
        }
    }

    #[test]
    fn the_cross_network_gateway_is_istios_expose_services_on_our_gateway_pods() {
        let selector = BTreeMap::from([("app".to_string(), "istio-ingressgateway".to_string())]);
        let Ok(Write::Create(body)) =
            cross_network_gateway(&owner(), "istio-system", &selector, None)
        else {
            panic!("absent: created");
        };
        assert_eq!(
            body,
            json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "Gateway",
                "metadata": {
                    "name": "cross-network-gateway",
                    "namespace": "istio-system",
                    "labels": {"app.kubernetes.io/managed-by": "dualmesh", "dualmesh.io/meshcluster": "alpha"},
                    "annotations": {"dualmesh.io/owner": "dualmesh-system/alpha"},
                },
                "spec": {
                    "selector": {"app": "istio-ingressgateway"},
                    "servers": [{
                        "port": {"number": 15443, "name": "tls", "protocol": "TLS"},
                        "tls": {"mode": "AUTO_PASSTHROUGH"},
                        "hosts": ["*.local"],
                    }],
                },
            })
        );
        // As read back: nothing to write.
        let meta: ObjectMeta = serde_json::from_value(body["metadata"].clone()).unwrap();
        let current = Current {
            meta: &meta,
            content: Some(&body["spec"]),
        };
        assert_eq!(
            cross_network_gateway(&owner(), "istio-system", &selector, Some(current)),
            Ok(Write::Keep)
        );
        // Someone else's Gateway of that name is left alone.
        let foreign = ObjectMeta {
            name: Some("cross-network-gateway".into()),
            ..Default::default()
        };
        let current = Current {
            meta: &foreign,
            content: None,
        };
        assert!(cross_network_gateway(&owner(), "istio-system", &selector, Some(current)).is_err());
    }

    fn ns(label: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some("istio-system".into()),
            resource_version: Some("12".into()),
            labels: label.map(|l| BTreeMap::from([(NETWORK_LABEL.to_string(), l.to_string())])),
            ..Default::default()
        }
    }

    #[test]
    fn the_istio_namespace_gets_the_network_label_once() {
        let want = Write::Apply(json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": "istio-system",
                "resourceVersion": "12",
                "labels": {"topology.istio.io/network": "net-a"},
            },
        }));
        assert_eq!(namespace_label(&ns(None), "net-a", &[]), want);
        assert_eq!(namespace_label(&ns(Some("net-b")), "net-a", &[]), want);
        assert_eq!(
            namespace_label(&ns(Some("net-a")), "net-a", &[]),
            Write::Keep
        );
        // Another MeshCluster of this cluster and namespace holds it: kept
        // (else the two flip it forever); an unclaimed value is replaced.
        let others = ["net-b".to_string()];
        assert_eq!(
            namespace_label(&ns(Some("net-b")), "net-a", &others),
            Write::Keep
        );
        assert_eq!(namespace_label(&ns(Some("net-c")), "net-a", &others), want);
        assert_eq!(namespace_label(&ns(None), "net-a", &others), want);
    }
}
