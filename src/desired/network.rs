//! The network topology Istio reads from labels: the Istio namespace
//! labelled `topology.istio.io/network=<network>` (the network of the
//! cluster's workloads, read by istiod and the sidecar injector). Pure: the
//! controller reads the namespace's metadata, this decides the write. (The
//! gateway Service's label is part of its write, [`super::gateway_service`].)

use kube::api::ObjectMeta;
use serde_json::json;

use super::publish::Write;
use crate::api::labels::NETWORK_LABEL;

/// The write that makes namespace `meta` (as read) carry the network label
/// `network`: only that label, applied with the resourceVersion read;
/// nothing when it already does.
pub fn namespace_label(meta: &ObjectMeta, network: &str) -> Write {
    let held = meta.labels.as_ref().and_then(|l| l.get(NETWORK_LABEL));
    if held.map(String::as_str) == Some(network) {
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
    use std::collections::BTreeMap;

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
        assert_eq!(namespace_label(&ns(None), "net-a"), want);
        assert_eq!(namespace_label(&ns(Some("net-b")), "net-a"), want);
        assert_eq!(namespace_label(&ns(Some("net-a")), "net-a"), Write::Keep);
    }
}
