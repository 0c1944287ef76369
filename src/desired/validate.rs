//! Validation that turns raw specs into typed, checked values. Pure: no
//! client, no clock.
//!
//! The CRD schema and its CEL rules refuse most bad input at the door; this
//! repeats those checks (so `dualmesh render` on plain files gives the same
//! answers) and adds what CEL cannot say: overlapping CIDRs, Pod CIDR vs node
//! mask vs Calico block size, duplicate sync targets. Every problem names the
//! field it is about.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use ipnet::{IpNet, Ipv6Net};

use crate::api::{
    DualStackPolicySpec, IpFamily, IpFamilyPolicy, MeshClusterSpec, NodeAddressType, SecretLocation,
};

/// One thing wrong with a spec: the field (as in `kubectl explain`) and what to do.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl Problem {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// All problems of one object, sorted by field, as one line for a condition.
pub fn summarize(problems: &[Problem]) -> String {
    let mut sorted = problems.to_vec();
    sorted.sort();
    sorted
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The address plan of one family, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FamilyPlan {
    pub service_cidr: Option<IpNet>,
    pub pod_cidr: Option<IpNet>,
    pub node_cidr_mask_size: Option<u8>,
    pub block_size: Option<u8>,
}

/// Which node addresses may be published, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressRules {
    pub address_types: Vec<NodeAddressType>,
    pub allowed_cidrs: Vec<IpNet>,
    pub allow_unique_local: bool,
    pub allow_private_ipv4: bool,
}

/// A DualStackPolicy that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidPolicy {
    /// One or two distinct families, primary first.
    pub families: Vec<IpFamily>,
    pub family_policy: IpFamilyPolicy,
    pub plans: BTreeMap<IpFamily, FamilyPlan>,
    pub nat64_prefix: Option<Ipv6Net>,
    pub addresses: AddressRules,
}

impl ValidPolicy {
    /// Two families.
    pub fn is_dual_stack(&self) -> bool {
        self.families.len() == 2
    }

    /// `IPv6,IPv4`: the families in order, for status and printer columns.
    pub fn families_label(&self) -> String {
        self.families
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn family_of(net: &IpNet) -> IpFamily {
    match net {
        IpNet::V4(_) => IpFamily::IPv4,
        IpNet::V6(_) => IpFamily::IPv6,
    }
}

fn parse_cidr(
    field: &str,
    value: &str,
    family: Option<IpFamily>,
    out: &mut Vec<Problem>,
) -> Option<IpNet> {
    let Ok(net) = value.parse::<IpNet>() else {
        let example = match family {
            Some(IpFamily::IPv4) => "an IPv4 CIDR such as 10.96.0.0/16",
            Some(IpFamily::IPv6) => "an IPv6 CIDR such as fd00:10:96::/112",
            None => "a CIDR such as 2001:db8:1::/48 or 192.0.2.0/24",
        };
        out.push(Problem::new(
            field,
            format!("{value:?} is not a CIDR: must be {example}"),
        ));
        return None;
    };
    if let Some(want) = family
        && family_of(&net) != want
    {
        out.push(Problem::new(
            field,
            format!("{value} is not an {want} CIDR"),
        ));
        return None;
    }
    if net.trunc() != net {
        out.push(Problem::new(
            field,
            format!("{value} has host bits set: did you mean {}?", net.trunc()),
        ));
        return None;
    }
    Some(net)
}

/// Checks a DualStackPolicy spec; every problem names its field.
pub fn validate_policy(spec: &DualStackPolicySpec) -> Result<ValidPolicy, Vec<Problem>> {
    let DualStackPolicySpec {
        ip_families,
        ip_family_policy,
        address_plan,
        nat64_prefix,
        gateway_addresses,
    } = spec;
    let mut out = Vec::new();

    let families = ip_families.clone();
    if families.is_empty() || families.len() > 2 {
        out.push(Problem::new(
            "spec.ipFamilies",
            "must list one or two families: [IPv6], [IPv6, IPv4] or [IPv4, IPv6]",
        ));
    } else if families.len() == 2 && families[0] == families[1] {
        out.push(Problem::new(
            "spec.ipFamilies",
            format!("{} is listed twice", families[0]),
        ));
    }
    match (ip_family_policy, families.len()) {
        (IpFamilyPolicy::SingleStack, n) if n != 1 => out.push(Problem::new(
            "spec.ipFamilyPolicy",
            "SingleStack takes exactly one entry in ipFamilies; use RequireDualStack or PreferDualStack for two",
        )),
        (IpFamilyPolicy::RequireDualStack, n) if n != 2 => out.push(Problem::new(
            "spec.ipFamilyPolicy",
            "RequireDualStack needs two entries in ipFamilies (IPv4 and IPv6)",
        )),
        _ => {}
    }

    let mut plans = BTreeMap::new();
    if let Some(plan) = address_plan {
        // The two slots differ only in their family, so they share one check.
        let slots = [
            (
                IpFamily::IPv4,
                plan.ipv4.as_ref().map(|p| {
                    (
                        p.service_cidr.as_deref(),
                        p.pod_cidr.as_deref(),
                        p.node_cidr_mask_size,
                        p.block_size,
                    )
                }),
            ),
            (
                IpFamily::IPv6,
                plan.ipv6.as_ref().map(|p| {
                    (
                        p.service_cidr.as_deref(),
                        p.pod_cidr.as_deref(),
                        p.node_cidr_mask_size,
                        p.block_size,
                    )
                }),
            ),
        ];
        for (family, fields) in slots {
            let Some((service, pod, mask, block)) = fields else {
                continue;
            };
            let base = format!("spec.addressPlan.{}", family.as_str().to_lowercase());
            let p = check_plan(family, &base, service, pod, mask, block, &mut out);
            if !families.contains(&family) {
                out.push(Problem::new(
                    base,
                    format!("is set but {family} is not in ipFamilies"),
                ));
            }
            plans.insert(family, p);
        }
    }

    let nat64 = nat64_prefix.as_deref().and_then(|raw| {
        let field = "spec.nat64Prefix";
        let net = parse_cidr(field, raw, Some(IpFamily::IPv6), &mut out)?;
        if families != [IpFamily::IPv6] {
            out.push(Problem::new(
                field,
                "applies to IPv6-only policies (ipFamilies: [IPv6]); remove it for dual-stack",
            ));
        }
        if ![32, 40, 48, 56, 64, 96].contains(&net.prefix_len()) {
            out.push(Problem::new(
                field,
                "a NAT64 prefix (RFC 6052) is /32, /40, /48, /56, /64 or /96",
            ));
            return None;
        }
        for (fam, plan) in &plans {
            for (what, cidr) in [
                ("serviceCIDR", plan.service_cidr),
                ("podCIDR", plan.pod_cidr),
            ] {
                if let Some(c) = cidr
                    && overlaps(&net, &c)
                {
                    let slot = fam.as_str().to_lowercase();
                    out.push(Problem::new(
                        field,
                        format!("{net} overlaps spec.addressPlan.{slot}.{what} {c}"),
                    ));
                }
            }
        }
        match net {
            IpNet::V6(v6) => Some(v6),
            IpNet::V4(_) => None,
        }
    });

    let mut allowed = Vec::new();
    for (i, raw) in gateway_addresses.allowed_cidrs.iter().enumerate() {
        if let Some(net) = parse_cidr(
            &format!("spec.gatewayAddresses.allowedCIDRs[{i}]"),
            raw,
            None,
            &mut out,
        ) {
            allowed.push(net);
        }
    }
    let mut types = gateway_addresses.address_types.clone();
    if types.is_empty() {
        out.push(Problem::new(
            "spec.gatewayAddresses.addressTypes",
            "must list InternalIP, ExternalIP or both",
        ));
    }
    let before = types.len();
    types.dedup();
    if types.len() != before {
        out.push(Problem::new(
            "spec.gatewayAddresses.addressTypes",
            "lists a type twice",
        ));
    }

    if !out.is_empty() {
        out.sort();
        out.dedup();
        return Err(out);
    }
    Ok(ValidPolicy {
        families,
        family_policy: *ip_family_policy,
        plans,
        nat64_prefix: nat64,
        addresses: AddressRules {
            address_types: types,
            allowed_cidrs: allowed,
            allow_unique_local: gateway_addresses.allow_unique_local,
            allow_private_ipv4: gateway_addresses.allow_private_ipv4,
        },
    })
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn check_plan(
    family: IpFamily,
    base: &str,
    service: Option<&str>,
    pod: Option<&str>,
    node_mask: Option<i32>,
    block: Option<i32>,
    out: &mut Vec<Problem>,
) -> FamilyPlan {
    let bits: i32 = match family {
        IpFamily::IPv4 => 32,
        IpFamily::IPv6 => 128,
    };
    // kube-apiserver refuses service ranges with more than 20 host bits
    // (IPv6 /108, IPv4 /12); Calico's block sizes are 20..32 and 116..128.
    let (min_service, block_range) = match family {
        IpFamily::IPv4 => (12u8, 20..=32),
        IpFamily::IPv6 => (108u8, 116..=128),
    };
    let service_field = format!("{base}.serviceCIDR");
    let service = service.and_then(|s| parse_cidr(&service_field, s, Some(family), out));
    if let Some(s) = service
        && s.prefix_len() < min_service
    {
        out.push(Problem::new(
            &service_field,
            format!("{s} is too large: a {family} service CIDR must be /{min_service} or longer (kube-apiserver allows at most 20 host bits)"),
        ));
    }
    let pod_field = format!("{base}.podCIDR");
    let pod = pod.and_then(|s| parse_cidr(&pod_field, s, Some(family), out));
    if let (Some(s), Some(p)) = (service, pod)
        && overlaps(&s, &p)
    {
        out.push(Problem::new(
            &pod_field,
            format!("{p} overlaps {service_field} {s}"),
        ));
    }

    let mask_field = format!("{base}.nodeCIDRMaskSize");
    let node_mask = node_mask.and_then(|m| {
        if !(1..=bits).contains(&m) {
            out.push(Problem::new(
                &mask_field,
                format!("{m} is not a prefix length of {family} (1 to {bits})"),
            ));
            return None;
        }
        Some(m as u8)
    });
    if let (Some(p), Some(m)) = (pod, node_mask) {
        let pl = p.prefix_len();
        if m <= pl {
            out.push(Problem::new(
                &mask_field,
                format!("/{m} must be longer than {pod_field} {p} (each node gets a slice of the Pod CIDR)"),
            ));
        } else if m - pl > 16 {
            out.push(Problem::new(
                &mask_field,
                format!(
                    "/{m} is {} bits longer than {pod_field} {p}; kube-controller-manager allows at most 16 (use a Pod CIDR of /{} or longer)",
                    m - pl,
                    m - 16
                ),
            ));
        }
    }

    let block_field = format!("{base}.blockSize");
    let block = block.and_then(|b| {
        if !block_range.contains(&b) {
            out.push(Problem::new(
                &block_field,
                format!(
                    "{b} is outside Calico's {family} block sizes ({} to {})",
                    block_range.start(),
                    block_range.end()
                ),
            ));
            return None;
        }
        Some(b as u8)
    });
    if let (Some(p), Some(b)) = (pod, block)
        && b < p.prefix_len()
    {
        out.push(Problem::new(
            &block_field,
            format!(
                "/{b} blocks do not fit in {pod_field} {p}: the block size must be /{} or longer",
                p.prefix_len()
            ),
        ));
    }
    FamilyPlan {
        service_cidr: service,
        pod_cidr: pod,
        node_cidr_mask_size: node_mask,
        block_size: block,
    }
}

/// A `host:port` with an IPv6 literal in brackets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses `host:port`, `1.2.3.4:port` or `[v6]:port`; an unbracketed IPv6
/// literal is refused because its last group cannot be told from a port.
pub fn parse_host_port(raw: &str) -> Result<HostPort, String> {
    let hint = "must be host:port, with an IPv6 literal in brackets, e.g. enterprise-agent.gloo-mesh:9977 or [2001:db8::1]:9977";
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (h, p) = rest
            .split_once("]:")
            .ok_or_else(|| format!("{raw:?} {hint}"))?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{raw:?}: {h:?} in brackets is not an IPv6 address"));
        }
        (h, p)
    } else {
        let (h, p) = raw
            .rsplit_once(':')
            .ok_or_else(|| format!("{raw:?} {hint}"))?;
        if h.contains(':') {
            return Err(format!("{raw:?} {hint}"));
        }
        let label_ok = !h.is_empty()
            && h.len() <= 253
            && h.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !label_ok {
            return Err(format!("{raw:?}: {h:?} is not a host name or IPv4 address"));
        }
        (h, p)
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{raw:?}: {port:?} is not a port (1 to 65535)"))?;
    Ok(HostPort {
        host: host.to_string(),
        port,
    })
}

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

fn is_label_value(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_secret_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AddressPlan, GatewayAddressPolicy, Ipv4Plan, Ipv6Plan};
    use proptest::prelude::*;

    fn v6_only() -> DualStackPolicySpec {
        DualStackPolicySpec {
            ip_families: vec![IpFamily::IPv6],
            ip_family_policy: IpFamilyPolicy::SingleStack,
            address_plan: None,
            nat64_prefix: None,
            gateway_addresses: GatewayAddressPolicy::default(),
        }
    }

    fn v6_plan(service: &str, pod: &str, mask: i32, block: i32) -> Option<AddressPlan> {
        Some(AddressPlan {
            ipv4: None,
            ipv6: Some(Ipv6Plan {
                service_cidr: Some(service.into()),
                pod_cidr: Some(pod.into()),
                node_cidr_mask_size: Some(mask),
                block_size: Some(block),
            }),
        })
    }

    fn problems(spec: &DualStackPolicySpec) -> Vec<String> {
        validate_policy(spec)
            .unwrap_err()
            .iter()
            .map(Problem::to_string)
            .collect()
    }

    #[test]
    fn seed_003_plan_is_valid_and_parsed() {
        let mut spec = v6_only();
        spec.address_plan = v6_plan(
            "2001:db8:1234:5678:8:3::/112",
            "2001:db8:1234:5678:8:2::/104",
            120,
            120,
        );
        spec.nat64_prefix = Some("64:ff9b::/96".into());
        let p = validate_policy(&spec).unwrap();
        assert_eq!(p.families_label(), "IPv6");
        assert!(!p.is_dual_stack());
        let plan = &p.plans[&IpFamily::IPv6];
        assert_eq!(
            plan.pod_cidr.unwrap().to_string(),
            "2001:db8:1234:5678:8:2::/104"
        );
        assert_eq!(plan.node_cidr_mask_size, Some(120));
        assert_eq!(p.nat64_prefix.unwrap().to_string(), "64:ff9b::/96");
    }

    #[test]
    fn overlapping_service_and_pod_cidrs_name_the_pod_cidr() {
        let mut spec = v6_only();
        spec.address_plan = v6_plan("fd00:10::/112", "fd00:10::/104", 120, 122);
        assert_eq!(
            problems(&spec),
            [
                "spec.addressPlan.ipv6.podCIDR: fd00:10::/104 overlaps spec.addressPlan.ipv6.serviceCIDR fd00:10::/112"
            ]
        );
    }

    #[test]
    fn node_mask_limits_follow_kube_controller_manager() {
        let mut spec = v6_only();
        spec.address_plan = v6_plan("fd00:96::/112", "fd00:244::/104", 104, 122);
        assert_eq!(
            problems(&spec),
            [
                "spec.addressPlan.ipv6.nodeCIDRMaskSize: /104 must be longer than spec.addressPlan.ipv6.podCIDR fd00:244::/104 (each node gets a slice of the Pod CIDR)"
            ]
        );
        spec.address_plan = v6_plan("fd00:96::/112", "fd00:244::/64", 120, 122);
        assert_eq!(
            problems(&spec),
            [
                "spec.addressPlan.ipv6.nodeCIDRMaskSize: /120 is 56 bits longer than spec.addressPlan.ipv6.podCIDR fd00:244::/64; kube-controller-manager allows at most 16 (use a Pod CIDR of /104 or longer)"
            ]
        );
    }

    #[test]
    fn calico_block_must_fit_in_the_pod_cidr() {
        let mut spec = DualStackPolicySpec {
            ip_families: vec![IpFamily::IPv4, IpFamily::IPv6],
            ip_family_policy: IpFamilyPolicy::RequireDualStack,
            ..v6_only()
        };
        spec.address_plan = Some(AddressPlan {
            ipv4: Some(Ipv4Plan {
                service_cidr: Some("10.96.0.0/16".into()),
                pod_cidr: Some("10.244.0.0/24".into()),
                node_cidr_mask_size: Some(26),
                block_size: Some(22),
            }),
            ipv6: None,
        });
        assert_eq!(
            problems(&spec),
            [
                "spec.addressPlan.ipv4.blockSize: /22 blocks do not fit in spec.addressPlan.ipv4.podCIDR 10.244.0.0/24: the block size must be /24 or longer"
            ]
        );
    }

    #[test]
    fn schema_rules_are_repeated_for_offline_input() {
        let mut spec = v6_only();
        spec.ip_families = vec![IpFamily::IPv6, IpFamily::IPv6];
        spec.nat64_prefix = Some("64:ff9b::/44".into());
        spec.gateway_addresses.allowed_cidrs = vec!["2001:db8::1/32".into(), "nope".into()];
        assert_eq!(
            problems(&spec),
            [
                "spec.gatewayAddresses.allowedCIDRs[0]: 2001:db8::1/32 has host bits set: did you mean 2001:db8::/32?",
                "spec.gatewayAddresses.allowedCIDRs[1]: \"nope\" is not a CIDR: must be a CIDR such as 2001:db8:1::/48 or 192.0.2.0/24",
                "spec.ipFamilies: IPv6 is listed twice",
                "spec.ipFamilyPolicy: SingleStack takes exactly one entry in ipFamilies; use RequireDualStack or PreferDualStack for two",
                "spec.nat64Prefix: a NAT64 prefix (RFC 6052) is /32, /40, /48, /56, /64 or /96",
                "spec.nat64Prefix: applies to IPv6-only policies (ipFamilies: [IPv6]); remove it for dual-stack",
            ]
        );
    }

    #[test]
    fn a_plan_for_a_family_the_policy_lacks_is_refused() {
        let mut spec = v6_only();
        spec.address_plan = Some(AddressPlan {
            ipv4: Some(Ipv4Plan {
                service_cidr: Some("10.96.0.0/16".into()),
                ..Ipv4Plan::default()
            }),
            ipv6: None,
        });
        assert_eq!(
            problems(&spec),
            ["spec.addressPlan.ipv4: is set but IPv4 is not in ipFamilies"]
        );
    }

    #[test]
    fn a_local_sync_onto_its_own_source_is_refused() {
        let yaml = include_str!("../../examples/meshcluster-beta.yaml");
        let mut spec = serde_yaml::from_str::<crate::api::MeshCluster>(yaml)
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

    #[test]
    fn host_ports_need_brackets_around_ipv6() {
        assert_eq!(
            parse_host_port("[2001:db8::1]:9977").unwrap().to_string(),
            "[2001:db8::1]:9977"
        );
        assert_eq!(parse_host_port("agent.gloo-mesh:9977").unwrap().port, 9977);
        assert_eq!(parse_host_port("192.0.2.1:80").unwrap().host, "192.0.2.1");
        for bad in [
            "2001:db8::1:9977",
            "agent",
            "agent:0",
            "agent:70000",
            "[nope]:1",
            "[::1]9977",
            ":80",
            "-a:1",
        ] {
            assert!(parse_host_port(bad).is_err(), "{bad} accepted");
        }
    }

    fn any_cidrish() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[0-9a-f:./]{0,48}",
            (any::<[u8; 16]>(), 0u8..=140)
                .prop_map(|(b, l)| format!("{}/{l}", std::net::Ipv6Addr::from(b))),
            (any::<[u8; 4]>(), 0u8..=40)
                .prop_map(|(b, l)| format!("{}/{l}", std::net::Ipv4Addr::from(b))),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn random_policies_never_panic_the_validator(
            service in any_cidrish(), pod in any_cidrish(), nat64 in any_cidrish(), allowed in any_cidrish(),
            mask in any::<i32>(), block in any::<i32>(), two in any::<bool>(),
        ) {
            let spec = DualStackPolicySpec {
                ip_families: if two { vec![IpFamily::IPv6, IpFamily::IPv4] } else { vec![IpFamily::IPv6] },
                ip_family_policy: IpFamilyPolicy::PreferDualStack,
                address_plan: Some(AddressPlan {
                    ipv4: Some(Ipv4Plan { service_cidr: Some(service.clone()), pod_cidr: Some(pod.clone()), node_cidr_mask_size: Some(mask), block_size: Some(block) }),
                    ipv6: Some(Ipv6Plan { service_cidr: Some(service), pod_cidr: Some(pod), node_cidr_mask_size: Some(mask), block_size: Some(block) }),
                }),
                nat64_prefix: Some(nat64),
                gateway_addresses: GatewayAddressPolicy { allowed_cidrs: vec![allowed], ..GatewayAddressPolicy::default() },
            };
            if let Err(problems) = validate_policy(&spec) {
                prop_assert!(problems.iter().all(|p| p.field.starts_with("spec.")));
            }
        }

        #[test]
        fn random_host_ports_never_panic(raw in any::<String>()) {
            let _ = parse_host_port(&raw);
        }
    }
}
