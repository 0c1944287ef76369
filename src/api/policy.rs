//! `DualStackPolicy`: the IP families a mesh uses, its address plan, and which
//! node addresses may be published as gateway externalIPs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// An IP family, as Kubernetes spells it.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub enum IpFamily {
    IPv4,
    IPv6,
}

impl IpFamily {
    /// `IPv4` or `IPv6`.
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamily::IPv4 => "IPv4",
            IpFamily::IPv6 => "IPv6",
        }
    }
}

impl std::fmt::Display for IpFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How Services of the mesh's gateways ask for IP families (Kubernetes' `ipFamilyPolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum IpFamilyPolicy {
    /// One family only: the first of `ipFamilies`.
    SingleStack,
    /// Both families where the cluster has them, else the first.
    PreferDualStack,
    /// Both families; the Service is refused where the cluster is not dual-stack.
    RequireDualStack,
}

impl IpFamilyPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamilyPolicy::SingleStack => "SingleStack",
            IpFamilyPolicy::PreferDualStack => "PreferDualStack",
            IpFamilyPolicy::RequireDualStack => "RequireDualStack",
        }
    }
}

/// Which of a Node's `status.addresses` may become gateway externalIPs.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum NodeAddressType {
    /// The node's address inside the cluster network (what seed 000 publishes).
    InternalIP,
    /// The node's address as reported reachable from outside the cluster.
    ExternalIP,
}

/// The desired IP-family setup of a mesh. Cluster-scoped: MeshClusters name it
/// in `spec.dualStackPolicyRef`.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "dualmesh.io",
    version = "v1alpha1",
    kind = "DualStackPolicy",
    plural = "dualstackpolicies",
    shortname = "dsp",
    category = "dualmesh",
    status = "DualStackPolicyStatus",
    doc = "The IP families a mesh uses (IPv6-only, or dual-stack with a primary family), its address plan and which node addresses may be published as gateway externalIPs.",
    printcolumn = r#"{"name":"FAMILIES","type":"string","jsonPath":".spec.ipFamilies"}"#,
    printcolumn = r#"{"name":"POLICY","type":"string","jsonPath":".spec.ipFamilyPolicy"}"#,
    printcolumn = r#"{"name":"IN-USE","type":"integer","jsonPath":".status.inUse"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.ipFamilyPolicy != 'SingleStack' || size(self.ipFamilies) == 1")
        .message("ipFamilyPolicy SingleStack takes exactly one entry in ipFamilies; use RequireDualStack or PreferDualStack for two")
        .field_path(".ipFamilyPolicy"),
    validation = Rule::new("self.ipFamilyPolicy != 'RequireDualStack' || size(self.ipFamilies) == 2")
        .message("ipFamilyPolicy RequireDualStack needs two entries in ipFamilies (IPv4 and IPv6)")
        .field_path(".ipFamilyPolicy"),
    validation = Rule::new("!has(self.addressPlan) || !has(self.addressPlan.ipv4) || 'IPv4' in self.ipFamilies")
        .message("addressPlan.ipv4 is set but IPv4 is not in ipFamilies")
        .field_path(".addressPlan.ipv4"),
    validation = Rule::new("!has(self.addressPlan) || !has(self.addressPlan.ipv6) || 'IPv6' in self.ipFamilies")
        .message("addressPlan.ipv6 is set but IPv6 is not in ipFamilies")
        .field_path(".addressPlan.ipv6"),
    validation = Rule::new("!has(self.nat64Prefix) || self.ipFamilies == ['IPv6']")
        .message("nat64Prefix applies to IPv6-only policies (ipFamilies: [IPv6]); remove it for dual-stack")
        .field_path(".nat64Prefix"),
)]
pub struct DualStackPolicySpec {
    /// The IP families of the mesh, primary first: `[IPv6]` for IPv6-only,
    /// `[IPv6, IPv4]` or `[IPv4, IPv6]` for dual-stack. The order is the order
    /// of the gateway Service's `ipFamilies` and of its externalIPs.
    #[schemars(length(min = 1, max = 2), extend("x-kubernetes-list-type" = "set"))]
    pub ip_families: Vec<IpFamily>,

    /// The gateway Services' `ipFamilyPolicy`. `SingleStack` takes one family,
    /// `RequireDualStack` two.
    pub ip_family_policy: IpFamilyPolicy,

    /// The cluster's address plan, per family. Optional: when set, dualmesh
    /// checks it (family, sizes, overlaps, Calico block limits) and reports
    /// problems in the `Valid` condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_plan: Option<AddressPlan>,

    /// The NAT64 prefix (RFC 6052) IPv6-only workloads reach IPv4-only
    /// destinations through, e.g. `64:ff9b::/96`. IPv6-only policies only.
    /// Prefix length /32, /40, /48, /56, /64 or /96.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(
        validation = Rule::new("isCIDR(self) && cidr(self).ip().family() == 6")
            .message("must be an IPv6 CIDR such as 64:ff9b::/96"),
        validation = Rule::new("!isCIDR(self) || cidr(self).ip().family() != 6 || cidr(self).prefixLength() in [32, 40, 48, 56, 64, 96]")
            .message("a NAT64 prefix (RFC 6052) is /32, /40, /48, /56, /64 or /96"),
    )]
    pub nat64_prefix: Option<String>,

    /// Which node addresses dualmesh may publish as gateway externalIPs.
    #[serde(default)]
    pub gateway_addresses: GatewayAddressPolicy,
}

/// Address ranges of one cluster, per family.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressPlan {
    /// The IPv4 ranges. Only when IPv4 is in `ipFamilies`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Plan>,
    /// The IPv6 ranges. Only when IPv6 is in `ipFamilies`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Plan>,
}

/// The IPv4 address plan.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ipv4Plan {
    /// The IPv4 Service CIDR (kube-apiserver `--service-cluster-ip-range`),
    /// /12 or longer, e.g. `10.96.0.0/16`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(
        validation = Rule::new("isCIDR(self) && cidr(self).ip().family() == 4")
            .message("must be an IPv4 CIDR such as 10.96.0.0/16"),
        validation = Rule::new("!isCIDR(self) || cidr(self).ip().family() != 4 || cidr(self).prefixLength() >= 12")
            .message("an IPv4 service CIDR must be /12 or longer (kube-apiserver allows at most 20 host bits)"),
    )]
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: Option<String>,

    /// The IPv4 Pod CIDR (kube-controller-manager `--cluster-cidr`), e.g. `10.244.0.0/16`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("isCIDR(self) && cidr(self).ip().family() == 4")
        .message("must be an IPv4 CIDR such as 10.244.0.0/16"))]
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Option<String>,

    /// The prefix length of each node's slice of the Pod CIDR
    /// (`--node-cidr-mask-size-ipv4`), e.g. 24.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32))]
    #[serde(rename = "nodeCIDRMaskSize")]
    pub node_cidr_mask_size: Option<i32>,

    /// Calico's IPAM block size for IPv4 (20 to 32; Calico's default is 26).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 20, max = 32))]
    pub block_size: Option<i32>,
}

/// The IPv6 address plan.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ipv6Plan {
    /// The IPv6 Service CIDR (kube-apiserver `--service-cluster-ip-range`),
    /// /108 or longer, e.g. `fd00:10:96::/112`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(
        validation = Rule::new("isCIDR(self) && cidr(self).ip().family() == 6")
            .message("must be an IPv6 CIDR such as fd00:10:96::/112"),
        validation = Rule::new("!isCIDR(self) || cidr(self).ip().family() != 6 || cidr(self).prefixLength() >= 108")
            .message("an IPv6 service CIDR must be /108 or longer (kube-apiserver allows at most 20 host bits)"),
    )]
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: Option<String>,

    /// The IPv6 Pod CIDR (kube-controller-manager `--cluster-cidr`), e.g. `fd00:10:244::/56`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("isCIDR(self) && cidr(self).ip().family() == 6")
        .message("must be an IPv6 CIDR such as fd00:10:244::/56"))]
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Option<String>,

    /// The prefix length of each node's slice of the Pod CIDR
    /// (`--node-cidr-mask-size-ipv6`), e.g. 64. At most 16 bits longer than
    /// the Pod CIDR's prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 128))]
    #[serde(rename = "nodeCIDRMaskSize")]
    pub node_cidr_mask_size: Option<i32>,

    /// Calico's IPAM block size for IPv6 (116 to 128; Calico's default is 122).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 116, max = 128))]
    pub block_size: Option<i32>,
}

/// Which Node addresses may become gateway externalIPs.
///
/// Whoever can set a Service's externalIPs can capture traffic sent to those
/// addresses (CVE-2020-8554), so dualmesh publishes global unicast addresses
/// only, never link-local, and only inside `allowedCIDRs` when that is set.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayAddressPolicy {
    /// The Node address types to take, in order of preference. Default `[InternalIP]`.
    #[serde(default = "default_address_types")]
    #[schemars(length(min = 1, max = 2), extend("x-kubernetes-list-type" = "set"))]
    pub address_types: Vec<NodeAddressType>,

    /// When set, only addresses inside one of these CIDRs are published.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 64)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))")
        .message("every entry must be a CIDR such as 2001:db8:1::/48 or 192.0.2.0/24"))]
    #[serde(rename = "allowedCIDRs")]
    pub allowed_cidrs: Vec<String>,

    /// Also publish IPv6 unique local addresses (fc00::/7). Default false.
    #[serde(default)]
    pub allow_unique_local: bool,

    /// Also publish private, shared and other non-global IPv4 addresses
    /// (10/8, 172.16/12, 192.168/16, 100.64/10). Default false.
    #[serde(default)]
    #[serde(rename = "allowPrivateIPv4")]
    pub allow_private_ipv4: bool,
}

fn default_address_types() -> Vec<NodeAddressType> {
    vec![NodeAddressType::InternalIP]
}

impl Default for GatewayAddressPolicy {
    fn default() -> Self {
        Self {
            address_types: default_address_types(),
            allowed_cidrs: Vec::new(),
            allow_unique_local: false,
            allow_private_ipv4: false,
        }
    }
}

/// What dualmesh observed of a DualStackPolicy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DualStackPolicyStatus {
    /// The generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Valid` (the policy passed the checks CEL cannot do) and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// How many MeshClusters name this policy.
    #[serde(default)]
    pub in_use: i32,
    /// The MeshClusters naming this policy, as `namespace/name`, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub used_by: Vec<String>,
}
