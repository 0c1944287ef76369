//! Sail Operator's `sailoperator.io/v1` objects for a MeshCluster: an
//! `Istio` (cluster-scoped), an `IstioCNI` named `default` when CNI runs,
//! a `ZTunnel` named `default` for the ambient profile. Their `spec.values`
//! are the values of Istio's charts ([`super::helm`]): Sail renders exactly
//! those charts from them. Pure.
//!
//! Sail's v1 CRDs decide the shape: `spec.version` is `vX.Y.Z`;
//! `spec.profile` is one of Sail's profiles (`minimal` is Sail's `default`,
//! see [`crate::desired::validate::profile_for`]); `spec.namespace` is
//! immutable and must equal `spec.values.global.istioNamespace` (a CEL rule
//! of Sail's); Sail sets `values.revision`, the image hub and tag from the
//! version itself, so dualmesh leaves those out. The `Istio` is named after
//! the revision (`default` without one): with the `InPlace` update strategy
//! Sail names its IstioRevision after the Istio.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::super::istio_operator;
use super::super::validate::{ValidMeshCluster, ValidPolicy, profile_for};
use super::helm::{cni_on, cni_values, istiod_values, ztunnel_values};
use crate::api::labels::MANAGED_BY;
use crate::api::{InstallWith, IstioProfile};

pub const API_VERSION: &str = "sailoperator.io/v1";

/// One Sail object (kind, name, body).
#[derive(Clone, Debug, PartialEq)]
pub struct SailObject {
    pub kind: &'static str,
    pub name: String,
    /// The whole object: apiVersion, kind, metadata (name, labels), spec.
    pub body: Value,
}

/// The Sail objects of one MeshCluster: Istio, then IstioCNI, then ZTunnel.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    pub objects: Vec<SailObject>,
    /// SHA-256 over every object's YAML, hex.
    pub hash: String,
}

impl Rendered {
    /// Every object as one YAML stream, as `dualmesh render --install-with
    /// Sail` prints it.
    pub fn stream(&self, header: &str) -> String {
        self.objects
            .iter()
            .map(|o| format!("---\n# {header}\n{}", crate::yaml::to_string(&o.body)))
            .collect()
    }
}

/// `1.28.0` -> `v1.28.0` (validation made sure the tag is a release).
pub fn version(tag: &str) -> String {
    format!("v{tag}")
}

fn object(kind: &'static str, name: &str, spec: Value) -> SailObject {
    SailObject {
        kind,
        name: name.to_string(),
        body: json!({
            "apiVersion": API_VERSION,
            "kind": kind,
            "metadata": {"name": name, "labels": {MANAGED_BY.0: MANAGED_BY.1}},
            "spec": spec,
        }),
    }
}

/// Builds the Sail objects for `mc` under `policy`.
pub fn build(mc: &ValidMeshCluster<'_>, policy: &ValidPolicy) -> Rendered {
    let istio = &mc.spec.istio;
    let io = istio_operator::build(mc, policy);
    let version = version(&istio.tag);
    let profile = profile_for(InstallWith::Sail, istio.profile).unwrap_or("default");
    let mut objects = Vec::new();

    let values = istiod_values(mc, &io);
    objects.push(object(
        "Istio",
        istio.revision.as_deref().unwrap_or("default"),
        json!({
            "version": version,
            "namespace": istio.namespace,
            "profile": profile,
            "updateStrategy": {"type": "InPlace"},
            "values": values,
        }),
    ));

    if cni_on(mc) {
        objects.push(object(
            "IstioCNI",
            "default",
            json!({
                "version": version,
                "namespace": istio.namespace,
                "profile": profile,
                "values": cni_values(mc),
            }),
        ));
    }

    if istio.profile == IstioProfile::Ambient {
        let mut ztunnel = ztunnel_values(mc, &io);
        // Sail's ZTunnel values: `ztunnel` has no istioNamespace of its own
        // (the ZTunnel's spec.namespace is it) and Sail sets the image.
        if let Some(z) = ztunnel.as_object_mut() {
            z.remove("istioNamespace");
        }
        objects.push(object(
            "ZTunnel",
            "default",
            json!({
                "version": version,
                "namespace": istio.namespace,
                "values": {"ztunnel": ztunnel},
            }),
        ));
    }

    let mut hasher = Sha256::new();
    for o in &objects {
        hasher.update(crate::yaml::to_string(&o.body).as_bytes());
    }
    Rendered {
        objects,
        hash: format!("{:x}", hasher.finalize()),
    }
}
