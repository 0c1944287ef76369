//! `dualmesh check`: is this cluster ready for the policy's mesh, family by
//! family? Pure: the CLI (and, for the cheap subset, the operator) fetch
//! what a cluster has into [`Observed`]; [`check`] turns it, with the policy
//! if there is one, into rows of OK / WARN / FAIL, each saying what it saw
//! and how to fix it.
//!
//! One file per subject: `cidrs` (ServiceCIDRs, node podCIDRs), `live`
//! (the operator's `ClusterMatchesPolicy` condition from them), `nodes`
//! (node addresses under the policy's gatewayAddresses rules), `platform`
//! (API server version, externalIPs admission, Istio), `output` (the text
//! table and the JSON document).

use std::fmt;

use serde::Serialize;

use crate::api::{DualStackPolicySpec, GatewayAddressPolicy, IpFamily, IpFamilyPolicy};
use crate::desired::gateway_addresses::NodeAddress;
use crate::desired::validate::{ValidPolicy, validate_policy};

mod cidrs;
mod live;
mod nodes;
mod output;
mod platform;
#[cfg(test)]
mod tests;

pub use cidrs::{pod_cidr_rows, service_cidr_rows};
pub use live::cluster_matches;
pub use output::{JSON_SCHEMA, json, text};
pub use platform::{parse_warning, version_of_image};

/// A `major.minor` version (Kubernetes or Istio).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// The leading `major.minor` of `v1.36.3`, `1.28.1-distroless`, `1.30+`.
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.strip_prefix('v').unwrap_or(raw);
        let mut parts = raw.splitn(3, '.');
        let major = parts.next()?.parse().ok()?;
        let minor: String = parts
            .next()?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        Some(Self::new(major, minor.parse().ok()?))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// One `ServiceCIDR` object (networking.k8s.io/v1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceCidr {
    pub name: String,
    /// `spec.cidrs`, as stored.
    pub cidrs: Vec<String>,
}

impl ServiceCidr {
    /// The ServiceCIDR objects as the checks read them, sorted by name.
    pub fn list<'a>(
        objects: impl IntoIterator<Item = &'a k8s_openapi::api::networking::v1::ServiceCIDR>,
    ) -> Vec<ServiceCidr> {
        let mut list: Vec<ServiceCidr> = objects
            .into_iter()
            .map(|c| ServiceCidr {
                name: c.metadata.name.clone().unwrap_or_default(),
                cidrs: c
                    .spec
                    .as_ref()
                    .and_then(|s| s.cidrs.clone())
                    .unwrap_or_default(),
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }
}

/// One Node, stripped to what the checks read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFacts {
    pub name: String,
    /// `spec.podCIDRs` (empty when not allocated).
    pub pod_cidrs: Vec<String>,
    /// `status.addresses`.
    pub addresses: Vec<NodeAddress>,
}

/// How the API server answered a dry-run create of a Service with one
/// `spec.externalIPs` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExternalIpsProbe {
    /// The create was accepted (nothing is stored: `dryRun=All`).
    pub accepted: bool,
    /// When refused: the HTTP code, the API's reason word and its message.
    pub refused: Option<(u16, String, String)>,
    /// The text of a `Warning` response header about externalIPs, if any.
    pub warning: Option<String>,
}

/// The istiod Deployment as found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Istiod {
    /// `namespace/name` of the Deployment.
    pub deployment: String,
    /// The `discovery` container's image.
    pub image: String,
    /// The value of its `ISTIO_DUAL_STACK` env entry, if set.
    pub dual_stack_env: Option<String>,
}

/// Everything one `dualmesh check` fetched. `None` means "not fetched" (the
/// rows about it are left out); an empty list means "fetched, none there".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// The API server's `gitVersion`, e.g. `v1.36.3`.
    pub api_server_version: Option<String>,
    /// The ServiceCIDR objects (when the API is served).
    pub service_cidrs: Option<Vec<ServiceCidr>>,
    /// networking.k8s.io/v1 ServiceCIDR is not served (Kubernetes < 1.33).
    pub service_cidr_api_missing: bool,
    /// Every Node, sorted by name.
    pub nodes: Option<Vec<NodeFacts>>,
    /// The nodes the gateway's ready Pods run on, sorted, without duplicates;
    /// and the selector used to find them (for the message).
    pub gateway: Option<(String, Vec<String>)>,
    pub external_ips: Option<ExternalIpsProbe>,
    /// istiod; `Some(None)`: looked for, not found.
    pub istiod: Option<Option<Istiod>>,
    /// Sail's `Istio` resources: `(name, spec.version)`.
    pub sail_istio: Vec<(String, String)>,
}

/// OK, WARN or FAIL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Level {
    #[serde(rename = "OK")]
    Ok,
    #[serde(rename = "WARN")]
    Warn,
    #[serde(rename = "FAIL")]
    Fail,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

/// What a row is about: one family, or the cluster as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Family(IpFamily),
    Cluster,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Family(f) => f.as_str(),
            Scope::Cluster => "cluster-wide",
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Stable identifiers of the checks (the `check` field of the JSON rows).
pub mod id {
    pub const SERVICE_CIDR: &str = "service-cidr";
    pub const POD_CIDR: &str = "pod-cidr";
    pub const NODE_ADDRESSES: &str = "node-addresses";
    pub const GATEWAY_NODES: &str = "gateway-nodes";
    pub const API_SERVER_VERSION: &str = "api-server-version";
    pub const EXTERNAL_IPS: &str = "external-ips";
    pub const ISTIO_VERSION: &str = "istio-version";
    pub const ISTIO_DUAL_STACK: &str = "istio-dual-stack";
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    #[serde(rename = "family")]
    pub scope: Scope,
    pub check: &'static str,
    pub level: Level,
    pub saw: String,
    /// What to do; None when there is nothing to do.
    pub fix: Option<String>,
}

impl Row {
    pub(crate) fn new(scope: Scope, check: &'static str, level: Level, saw: String) -> Self {
        Self {
            scope,
            check,
            level,
            saw,
            fix: None,
        }
    }

    pub(crate) fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// The whole answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The policy checked against (its name), if any.
    pub policy: Option<String>,
    /// The families checked, primary first.
    pub families: Vec<IpFamily>,
    /// Per family in `families` order, then cluster-wide.
    pub rows: Vec<Row>,
}

impl Report {
    /// The worst level of any row (OK for none).
    pub fn worst(&self) -> Level {
        self.rows.iter().map(|r| r.level).max().unwrap_or(Level::Ok)
    }

    /// 1 when a row FAILs, else 0.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.worst() == Level::Fail)
    }
}

/// The policy to check against without one: both families, IPv6 first, no
/// address plan, the default gatewayAddresses rules (global unicast only).
pub fn default_policy() -> ValidPolicy {
    validate_policy(&DualStackPolicySpec {
        ip_families: vec![IpFamily::IPv6, IpFamily::IPv4],
        ip_family_policy: IpFamilyPolicy::RequireDualStack,
        address_plan: None,
        nat64_prefix: None,
        gateway_addresses: GatewayAddressPolicy::default(),
    })
    .expect("the default policy is valid")
}

/// Every check on what was observed, against `policy` (named `policy_name`)
/// or, without one, [`default_policy`].
pub fn check(observed: &Observed, policy: Option<(&str, &ValidPolicy)>) -> Report {
    let fallback;
    let (name, policy) = match policy {
        Some((name, p)) => (Some(name.to_string()), p),
        None => {
            fallback = default_policy();
            (None, &fallback)
        }
    };
    let mut rows = Vec::new();
    for family in &policy.families {
        rows.extend(service_cidr_rows(observed, *family, policy));
        rows.extend(pod_cidr_rows(observed, *family, policy));
        rows.extend(nodes::rows(observed, *family, policy));
    }
    rows.extend(platform::rows(observed, policy));
    Report {
        policy: name,
        families: policy.families.clone(),
        rows,
    }
}
