//! Gateway address selection: which Node addresses become the ingress
//! gateway Service's externalIPs, how they merge with entries other managers
//! set, and the `GatewayAddressesReady` verdict. Pure: the controller converts
//! the Pods and Nodes it observed into the plain structs below and applies
//! what comes back.
//!
//! Whoever sets a Service's externalIPs captures traffic sent to them
//! (CVE-2020-8554), so only global unicast addresses are published unless the
//! policy widens that (`allowUniqueLocal`, `allowPrivateIPv4`), and only inside
//! `allowedCIDRs` when that is set. Every IP-typed Node address (`InternalIP`,
//! `ExternalIP`) of a gateway node is either selected or rejected with a
//! reason; `Hostname`, `InternalDNS` and `ExternalDNS` entries are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::api::conditions::reason;
use crate::api::{IpFamily, NodeAddressType};
use crate::desired::validate::{AddressRules, ValidPolicy};

/// How many addresses a ready message lists before "and N more".
const LISTED_ADDRESSES: usize = 6;
/// How many rejections (and nodes) a not-ready message lists before "and N more".
const LISTED_REJECTIONS: usize = 3;

/// A gateway Pod, as far as address selection cares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayPod {
    /// `metadata.name`.
    pub name: String,
    /// `spec.nodeName`; `None` (or empty) while unscheduled.
    pub node_name: Option<String>,
    /// `status.phase` is `Running`.
    pub running: bool,
    /// The Pod's `Ready` condition is `True`.
    pub ready: bool,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
}

impl GatewayPod {
    /// The node of a Pod that counts: running, ready, scheduled, not being deleted.
    fn counted_node(&self) -> Option<&str> {
        if !self.running || !self.ready || self.deleting {
            return None;
        }
        self.node_name.as_deref().filter(|n| !n.is_empty())
    }
}

/// One entry of a Node's `status.addresses`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeAddress {
    /// `type`: `InternalIP`, `ExternalIP`, `Hostname`, `InternalDNS` or `ExternalDNS`.
    pub kind: String,
    /// `address`, as the kubelet or cloud provider reported it.
    pub address: String,
}

/// Why a Node address is not published.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RejectReason {
    /// Not an IP address (an IPv6 zone such as `%eth0` counts as not one).
    Unparseable,
    /// Its family is not in `spec.ipFamilies`.
    FamilyNotInPolicy,
    /// Its type is not in `spec.gatewayAddresses.addressTypes`.
    AddressTypeNotWanted(NodeAddressType),
    /// IPv6 fe80::/10 or IPv4 169.254.0.0/16. Never published.
    LinkLocal,
    /// Loopback, unspecified, multicast, IPv4-mapped, IPv4 0/8 or 240/4, or
    /// IPv6 outside 2000::/3 and fc00::/7. Never published.
    NotGlobal,
    /// IPv6 fc00::/7 while `allowUniqueLocal` is off.
    UniqueLocal,
    /// IPv4 10/8, 172.16/12, 192.168/16 or 100.64/10 while `allowPrivateIPv4` is off.
    PrivateIpv4,
    /// Eligible otherwise, but inside none of `allowedCIDRs`.
    OutsideAllowedCidrs,
    /// Eligible, but the node has an eligible address of the same family of a
    /// type earlier in `addressTypes`.
    LessPreferredType,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::Unparseable => f.write_str("not an IP address"),
            RejectReason::FamilyNotInPolicy => f.write_str("family not in spec.ipFamilies"),
            RejectReason::AddressTypeNotWanted(t) => write!(
                f,
                "{}, not in spec.gatewayAddresses.addressTypes",
                type_name(*t)
            ),
            RejectReason::LinkLocal => f.write_str("link-local"),
            RejectReason::NotGlobal => f.write_str("not global unicast"),
            RejectReason::UniqueLocal => {
                f.write_str("unique local, needs spec.gatewayAddresses.allowUniqueLocal")
            }
            RejectReason::PrivateIpv4 => {
                f.write_str("private, needs spec.gatewayAddresses.allowPrivateIPv4")
            }
            RejectReason::OutsideAllowedCidrs => {
                f.write_str("outside spec.gatewayAddresses.allowedCIDRs")
            }
            RejectReason::LessPreferredType => {
                f.write_str("a type earlier in spec.gatewayAddresses.addressTypes is used")
            }
        }
    }
}

/// A Node address that is not published, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// The Node's name.
    pub node: String,
    /// The address as the Node reported it.
    pub address: String,
    /// Why it is not published.
    pub reason: RejectReason,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}: {}", self.address, self.node, self.reason)
    }
}

/// What [`select`] found: the externalIPs dualmesh wants and how it got there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// What `spec.externalIPs` should hold of ours: family order, then
    /// ascending address order, canonical spelling, no duplicates.
    pub external_ips: Vec<String>,
    /// The same addresses per family, in the policy's family order; every
    /// policy family is present, possibly with no addresses.
    pub by_family: Vec<(IpFamily, Vec<String>)>,
    /// The gateway Pods counted (running, ready, on a node, not being deleted).
    pub ready_pods: usize,
    /// The nodes of counted Pods that are known, sorted, without duplicates.
    pub nodes: Vec<String>,
    /// The nodes of counted Pods that are not in the node map, sorted, without duplicates.
    pub missing_nodes: Vec<String>,
    /// The IP-typed addresses of `nodes` that were not selected: by node,
    /// then in the Node's own order.
    pub rejected: Vec<Rejected>,
}

impl Selection {
    /// The policy families without any selected address, in policy order.
    pub fn missing_families(&self) -> Vec<IpFamily> {
        self.by_family
            .iter()
            .filter(|(_, ips)| ips.is_empty())
            .map(|(family, _)| *family)
            .collect()
    }
}

/// Selects the gateway externalIPs from the nodes of the counted gateway Pods.
///
/// Per node and family, the eligible addresses of the first type in
/// `addressTypes` that yields any for that family are taken; the rest of that
/// family's eligible addresses are [`RejectReason::LessPreferredType`].
/// Node names are looked up in `nodes` (name to `status.addresses`).
pub fn select(
    pods: &[GatewayPod],
    nodes: &BTreeMap<String, Vec<NodeAddress>>,
    policy: &ValidPolicy,
) -> Selection {
    let counted: Vec<&str> = pods.iter().filter_map(GatewayPod::counted_node).collect();
    let named: BTreeSet<&str> = counted.iter().copied().collect();
    let (known, missing): (Vec<&str>, Vec<&str>) =
        named.into_iter().partition(|n| nodes.contains_key(*n));

    let mut chosen: BTreeMap<IpFamily, BTreeSet<IpAddr>> = BTreeMap::new();
    let mut rejected = Vec::new();
    for node in &known {
        for ip in node_selection(node, &nodes[*node], policy, &mut rejected) {
            chosen.entry(family_of(&ip)).or_default().insert(ip);
        }
    }

    let by_family: Vec<(IpFamily, Vec<String>)> = policy
        .families
        .iter()
        .map(|f| {
            let ips = chosen.get(f).into_iter().flatten();
            (*f, ips.map(IpAddr::to_string).collect())
        })
        .collect();
    Selection {
        external_ips: by_family.iter().flat_map(|(_, ips)| ips.clone()).collect(),
        by_family,
        ready_pods: counted.len(),
        nodes: known.into_iter().map(String::from).collect(),
        missing_nodes: missing.into_iter().map(String::from).collect(),
        rejected,
    }
}

/// An IP-typed Node address, judged: its preference rank (index in
/// `addressTypes`) and address, or why it is not published.
type Judgment = Result<(usize, IpAddr), RejectReason>;

/// The addresses one node contributes; its rejections are appended to `rejected`.
fn node_selection(
    node: &str,
    addresses: &[NodeAddress],
    policy: &ValidPolicy,
    rejected: &mut Vec<Rejected>,
) -> Vec<IpAddr> {
    let judged: Vec<(&NodeAddress, Judgment)> = addresses
        .iter()
        .filter_map(|a| Some((a, judge(address_type(&a.kind)?, &a.address, policy))))
        .collect();
    let mut best: BTreeMap<IpFamily, usize> = BTreeMap::new();
    for (rank, ip) in judged.iter().filter_map(|(_, j)| j.ok()) {
        let b = best.entry(family_of(&ip)).or_insert(rank);
        *b = (*b).min(rank);
    }
    let picked: Vec<IpAddr> = judged
        .iter()
        .filter_map(|(_, j)| j.ok())
        .filter(|(rank, ip)| best[&family_of(ip)] == *rank)
        .map(|(_, ip)| ip)
        .collect();
    for (a, j) in &judged {
        let reason = match j {
            Err(reason) => *reason,
            Ok((_, ip)) if !picked.contains(ip) => RejectReason::LessPreferredType,
            Ok(_) => continue,
        };
        rejected.push(Rejected {
            node: node.to_string(),
            address: a.address.clone(),
            reason,
        });
    }
    picked
}

/// The preference rank of an address of type `kind` (its index in
/// `addressTypes`), or why it is not published.
fn judge(kind: NodeAddressType, raw: &str, policy: &ValidPolicy) -> Judgment {
    let ip: IpAddr = raw.parse().map_err(|_| RejectReason::Unparseable)?;
    if !policy.families.contains(&family_of(&ip)) {
        return Err(RejectReason::FamilyNotInPolicy);
    }
    let rank = policy
        .addresses
        .address_types
        .iter()
        .position(|t| *t == kind)
        .ok_or(RejectReason::AddressTypeNotWanted(kind))?;
    eligible(&ip, &policy.addresses)?;
    Ok((rank, ip))
}

/// Whether the address class and `allowedCIDRs` let `ip` be published.
fn eligible(ip: &IpAddr, rules: &AddressRules) -> Result<(), RejectReason> {
    match ip {
        IpAddr::V4(a) => ipv4_class(a, rules.allow_private_ipv4)?,
        IpAddr::V6(a) => ipv6_class(a, rules.allow_unique_local)?,
    }
    if !rules.allowed_cidrs.is_empty() && !rules.allowed_cidrs.iter().any(|n| n.contains(ip)) {
        return Err(RejectReason::OutsideAllowedCidrs);
    }
    Ok(())
}

/// IPv4: 169.254/16 link-local; 0/8, 127/8, 224/4 and 240/4 never; the
/// private and shared ranges only when allowed; everything else is global
/// (the documentation ranges included).
fn ipv4_class(a: &Ipv4Addr, allow_private: bool) -> Result<(), RejectReason> {
    let [first, second, ..] = a.octets();
    if a.is_link_local() {
        return Err(RejectReason::LinkLocal);
    }
    if first == 0 || first == 127 || first >= 224 {
        return Err(RejectReason::NotGlobal);
    }
    let shared = first == 100 && second & 0xc0 == 64;
    if (a.is_private() || shared) && !allow_private {
        return Err(RejectReason::PrivateIpv4);
    }
    Ok(())
}

/// IPv6: fe80::/10 link-local; fc00::/7 only when allowed; otherwise only
/// global unicast 2000::/3 (so never loopback, unspecified, multicast or
/// IPv4-mapped). 2001:db8::/32 is inside 2000::/3 and counts as global.
fn ipv6_class(a: &Ipv6Addr, allow_unique_local: bool) -> Result<(), RejectReason> {
    if a.is_unicast_link_local() {
        Err(RejectReason::LinkLocal)
    } else if a.is_unique_local() {
        if allow_unique_local {
            Ok(())
        } else {
            Err(RejectReason::UniqueLocal)
        }
    } else if a.segments()[0] & 0xe000 == 0x2000 {
        Ok(())
    } else {
        Err(RejectReason::NotGlobal)
    }
}

/// The Node address types that carry IP addresses; `None` for the DNS and
/// hostname types (and anything unknown).
fn address_type(kind: &str) -> Option<NodeAddressType> {
    match kind {
        "InternalIP" => Some(NodeAddressType::InternalIP),
        "ExternalIP" => Some(NodeAddressType::ExternalIP),
        _ => None,
    }
}

/// The Kubernetes spelling of a Node address type.
fn type_name(t: NodeAddressType) -> &'static str {
    match t {
        NodeAddressType::InternalIP => "InternalIP",
        NodeAddressType::ExternalIP => "ExternalIP",
    }
}

fn family_of(ip: &IpAddr) -> IpFamily {
    match ip {
        IpAddr::V4(_) => IpFamily::IPv4,
        IpAddr::V6(_) => IpFamily::IPv6,
    }
}

/// An IP address in canonical form; anything else as it is.
fn canonical(raw: &str) -> String {
    raw.parse::<IpAddr>()
        .map(|ip| ip.to_string())
        .unwrap_or_else(|_| raw.to_string())
}

/// `spec.externalIPs` is an atomic list in Kubernetes, so server-side apply
/// owns it whole. To leave addresses that another manager set alone, the
/// controller records what dualmesh set (in an annotation) and merges: ours
/// first (in our order), then the current entries that are neither ours now
/// nor were ours before, in their current order; deduplicated by canonical
/// form. Parseable entries come out in canonical form, others as they are.
pub fn merge_external_ips(
    current: &[String],
    previously_ours: &[String],
    ours: &[String],
) -> Vec<String> {
    let mine: BTreeSet<String> = ours
        .iter()
        .chain(previously_ours)
        .map(|s| canonical(s))
        .collect();
    let foreign = current
        .iter()
        .map(|s| canonical(s))
        .filter(|c| !mine.contains(c));
    let mut seen = BTreeSet::new();
    ours.iter()
        .map(|s| canonical(s))
        .chain(foreign)
        .filter(|c| seen.insert(c.clone()))
        .collect()
}

/// The `GatewayAddressesReady` condition for a selection, without the
/// outcomes only the controller can see (`ServiceMissing`, `ExternalIPsDenied`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The condition's status.
    pub ready: bool,
    /// One of the [`reason`] constants.
    pub reason: &'static str,
    /// One short line for the condition's message.
    pub message: String,
}

/// `NoGatewayPods` without a counted Pod, `NoAddressOfFamily` while a policy
/// family has no address (naming the rejections and the policy field to
/// change), else `AddressesPublished`.
pub fn verdict(sel: &Selection, policy: &ValidPolicy) -> Verdict {
    if sel.ready_pods == 0 {
        return Verdict {
            ready: false,
            reason: reason::NO_GATEWAY_PODS,
            message: "no gateway Pod is running and ready on a node".to_string(),
        };
    }
    let missing = sel.missing_families();
    if missing.is_empty() {
        return Verdict {
            ready: true,
            reason: reason::ADDRESSES_PUBLISHED,
            message: published_message(sel),
        };
    }
    Verdict {
        ready: false,
        reason: reason::NO_ADDRESS_OF_FAMILY,
        message: no_address_message(sel, policy, &missing),
    }
}

/// `2 addresses from 2 nodes: 2001:db8::10, 192.0.2.10`.
fn published_message(sel: &Selection) -> String {
    format!(
        "{} from {}: {}",
        counted(sel.external_ips.len(), "address", "addresses"),
        counted(sel.nodes.len(), "node", "nodes"),
        capped(&sel.external_ips, LISTED_ADDRESSES, ", ")
    )
}

/// `no eligible IPv6 address on nodes node-a, node-b (fe80::1 on node-a: link-local)`.
fn no_address_message(sel: &Selection, policy: &ValidPolicy, missing: &[IpFamily]) -> String {
    let families = missing
        .iter()
        .map(|f| f.as_str())
        .collect::<Vec<_>>()
        .join(" or ");
    let mut message = format!("no eligible {families} address");
    if !sel.nodes.is_empty() {
        let why: Vec<String> = sel
            .rejected
            .iter()
            .filter(|r| concerns(r, missing))
            .map(Rejected::to_string)
            .collect();
        let why = if why.is_empty() {
            let types = policy
                .addresses
                .address_types
                .iter()
                .map(|t| type_name(*t))
                .collect::<Vec<_>>()
                .join(" or ");
            format!("no {families} {types} address reported")
        } else {
            capped(&why, LISTED_REJECTIONS, "; ")
        };
        message += &format!(" on {} ({why})", node_list(&sel.nodes));
    }
    if !sel.missing_nodes.is_empty() {
        message += &format!("; {} not found", node_list(&sel.missing_nodes));
    }
    message
}

/// Whether a rejection explains a missing family: it is of that family, or
/// of no family at all (unparseable).
fn concerns(r: &Rejected, missing: &[IpFamily]) -> bool {
    r.address
        .parse::<IpAddr>()
        .map_or(true, |ip| missing.contains(&family_of(&ip)))
}

/// `node node-a` or `nodes node-a, node-b`, capped.
fn node_list(nodes: &[String]) -> String {
    let noun = if nodes.len() == 1 { "node" } else { "nodes" };
    format!("{noun} {}", capped(nodes, LISTED_REJECTIONS, ", "))
}

/// `1 node`, `2 nodes`.
fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The first `cap` items joined by `sep`, then `and N more` for the rest.
fn capped(items: &[String], cap: usize, sep: &str) -> String {
    if items.len() <= cap {
        return items.join(sep);
    }
    format!(
        "{}{sep}and {} more",
        items[..cap].join(sep),
        items.len() - cap
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DualStackPolicySpec;
    use crate::desired::validate::validate_policy;
    use proptest::prelude::*;

    const V6_ONLY: &str = "{ipFamilies: [IPv6], ipFamilyPolicy: SingleStack}";
    const V4_ONLY: &str = "{ipFamilies: [IPv4], ipFamilyPolicy: SingleStack}";
    const V6_PRIMARY: &str = "{ipFamilies: [IPv6, IPv4], ipFamilyPolicy: RequireDualStack}";
    const V4_PRIMARY: &str = "{ipFamilies: [IPv4, IPv6], ipFamilyPolicy: PreferDualStack}";

    /// A policy from YAML: `base` (families) plus its `gatewayAddresses`.
    fn policy(base: &str, gateway_addresses: &str) -> ValidPolicy {
        let mut spec: DualStackPolicySpec = serde_saphyr::from_str(base).unwrap();
        if !gateway_addresses.is_empty() {
            spec.gateway_addresses = serde_saphyr::from_str(gateway_addresses).unwrap();
        }
        validate_policy(&spec).unwrap()
    }

    fn pod(name: &str, node: &str) -> GatewayPod {
        GatewayPod {
            name: name.into(),
            node_name: Some(node.into()),
            running: true,
            ready: true,
            deleting: false,
        }
    }

    fn node_map(nodes: &[(&str, &[(&str, &str)])]) -> BTreeMap<String, Vec<NodeAddress>> {
        nodes
            .iter()
            .map(|(name, addresses)| {
                let addresses = addresses
                    .iter()
                    .map(|(kind, address)| NodeAddress {
                        kind: kind.to_string(),
                        address: address.to_string(),
                    })
                    .collect();
                (name.to_string(), addresses)
            })
            .collect()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn rejected(node: &str, address: &str, reason: RejectReason) -> Rejected {
        Rejected {
            node: node.into(),
            address: address.into(),
            reason,
        }
    }

    const MIXED: &[(&str, &str)] = &[
        ("InternalIP", "192.0.2.10"),
        ("InternalIP", "10.0.0.5"),
        ("InternalIP", "2001:db8::10"),
        ("InternalIP", "fd00::10"),
        ("InternalIP", "fe80::1"),
        ("Hostname", "node-a"),
        ("InternalIP", "not-an-ip"),
    ];

    fn mixed_node(p: &ValidPolicy) -> Selection {
        select(&[pod("gw-1", "node-a")], &node_map(&[("node-a", MIXED)]), p)
    }

    #[test]
    fn ipv6_only_takes_the_global_ipv6_address_of_a_mixed_node() {
        use RejectReason::*;
        assert_eq!(
            mixed_node(&policy(V6_ONLY, "")),
            Selection {
                external_ips: strings(&["2001:db8::10"]),
                by_family: vec![(IpFamily::IPv6, strings(&["2001:db8::10"]))],
                ready_pods: 1,
                nodes: strings(&["node-a"]),
                missing_nodes: vec![],
                rejected: vec![
                    rejected("node-a", "192.0.2.10", FamilyNotInPolicy),
                    rejected("node-a", "10.0.0.5", FamilyNotInPolicy),
                    rejected("node-a", "fd00::10", UniqueLocal),
                    rejected("node-a", "fe80::1", LinkLocal),
                    rejected("node-a", "not-an-ip", Unparseable),
                ],
            }
        );
    }

    #[test]
    fn dual_stack_ipv6_primary_lists_ipv6_first() {
        use RejectReason::*;
        assert_eq!(
            mixed_node(&policy(V6_PRIMARY, "")),
            Selection {
                external_ips: strings(&["2001:db8::10", "192.0.2.10"]),
                by_family: vec![
                    (IpFamily::IPv6, strings(&["2001:db8::10"])),
                    (IpFamily::IPv4, strings(&["192.0.2.10"])),
                ],
                ready_pods: 1,
                nodes: strings(&["node-a"]),
                missing_nodes: vec![],
                rejected: vec![
                    rejected("node-a", "10.0.0.5", PrivateIpv4),
                    rejected("node-a", "fd00::10", UniqueLocal),
                    rejected("node-a", "fe80::1", LinkLocal),
                    rejected("node-a", "not-an-ip", Unparseable),
                ],
            }
        );
    }

    #[test]
    fn dual_stack_ipv4_primary_lists_ipv4_first() {
        let sel = mixed_node(&policy(V4_PRIMARY, ""));
        assert_eq!(sel.external_ips, strings(&["192.0.2.10", "2001:db8::10"]));
        assert_eq!(
            sel.by_family,
            vec![
                (IpFamily::IPv4, strings(&["192.0.2.10"])),
                (IpFamily::IPv6, strings(&["2001:db8::10"])),
            ]
        );
    }

    #[test]
    fn unique_local_only_when_allowed() {
        let sel = mixed_node(&policy(V6_ONLY, "{allowUniqueLocal: true}"));
        assert_eq!(sel.external_ips, strings(&["2001:db8::10", "fd00::10"]));
        assert_eq!(
            sel.rejected
                .iter()
                .map(|r| (r.address.as_str(), r.reason))
                .collect::<Vec<_>>(),
            vec![
                ("192.0.2.10", RejectReason::FamilyNotInPolicy),
                ("10.0.0.5", RejectReason::FamilyNotInPolicy),
                ("fe80::1", RejectReason::LinkLocal),
                ("not-an-ip", RejectReason::Unparseable),
            ]
        );
    }

    #[test]
    fn private_ipv4_only_when_allowed() {
        let sel = mixed_node(&policy(V4_ONLY, "{allowPrivateIPv4: true}"));
        assert_eq!(sel.external_ips, strings(&["10.0.0.5", "192.0.2.10"]));
        let sel = mixed_node(&policy(V4_ONLY, ""));
        assert_eq!(sel.external_ips, strings(&["192.0.2.10"]));
    }

    #[test]
    fn address_classes() {
        use RejectReason::*;
        let cases: &[(&str, Option<RejectReason>)] = &[
            ("2001:db8::1", None),
            ("2a00:1450::1", None),
            ("::1", Some(NotGlobal)),
            ("::", Some(NotGlobal)),
            ("ff02::1", Some(NotGlobal)),
            ("::ffff:192.0.2.1", Some(NotGlobal)),
            ("64:ff9b::192.0.2.1", Some(NotGlobal)),
            ("fe80::1", Some(LinkLocal)),
            ("febf::1", Some(LinkLocal)),
            ("fc00::1", Some(UniqueLocal)),
            ("fe80::1%eth0", Some(Unparseable)),
            ("192.0.2.1", None),
            ("198.51.100.1", None),
            ("203.0.113.1", None),
            ("100.128.0.1", None),
            ("172.32.0.1", None),
            ("127.0.0.1", Some(NotGlobal)),
            ("0.1.2.3", Some(NotGlobal)),
            ("224.0.0.1", Some(NotGlobal)),
            ("240.0.0.1", Some(NotGlobal)),
            ("255.255.255.255", Some(NotGlobal)),
            ("169.254.1.1", Some(LinkLocal)),
            ("10.1.1.1", Some(PrivateIpv4)),
            ("172.31.0.1", Some(PrivateIpv4)),
            ("192.168.1.1", Some(PrivateIpv4)),
            ("100.64.0.1", Some(PrivateIpv4)),
            ("100.127.255.255", Some(PrivateIpv4)),
            ("010.0.0.1", Some(Unparseable)),
        ];
        let addresses: Vec<(&str, &str)> = cases.iter().map(|(a, _)| ("InternalIP", *a)).collect();
        let sel = select(
            &[pod("gw", "n")],
            &node_map(&[("n", &addresses)]),
            &policy(V6_PRIMARY, ""),
        );
        let want_rejected: Vec<Rejected> = cases
            .iter()
            .filter_map(|(a, r)| r.map(|r| rejected("n", a, r)))
            .collect();
        assert_eq!(sel.rejected, want_rejected);
        assert_eq!(
            sel.external_ips,
            strings(&[
                "2001:db8::1",
                "2a00:1450::1",
                "100.128.0.1",
                "172.32.0.1",
                "192.0.2.1",
                "198.51.100.1",
                "203.0.113.1",
            ])
        );
    }

    #[test]
    fn allowed_cidrs_apply_on_top_of_the_class_rules() {
        use RejectReason::*;
        let p = policy(
            V6_PRIMARY,
            "{allowUniqueLocal: true, allowedCIDRs: [2001:db8:1::/48, 192.0.2.0/24, 10.0.0.0/8]}",
        );
        let nodes = node_map(&[(
            "node-a",
            &[
                ("InternalIP", "2001:db8:1::5"),
                ("InternalIP", "2001:db8:2::5"),
                ("InternalIP", "fd00::1"),
                ("InternalIP", "192.0.2.7"),
                ("InternalIP", "198.51.100.7"),
                ("InternalIP", "10.0.0.7"),
            ],
        )]);
        let sel = select(&[pod("gw", "node-a")], &nodes, &p);
        assert_eq!(sel.external_ips, strings(&["2001:db8:1::5", "192.0.2.7"]));
        assert_eq!(
            sel.rejected,
            vec![
                rejected("node-a", "2001:db8:2::5", OutsideAllowedCidrs),
                rejected("node-a", "fd00::1", OutsideAllowedCidrs),
                rejected("node-a", "198.51.100.7", OutsideAllowedCidrs),
                rejected("node-a", "10.0.0.7", PrivateIpv4),
            ]
        );
    }

    #[test]
    fn preferred_type_per_node_and_family_with_fallback() {
        use RejectReason::*;
        let p = policy(V6_PRIMARY, "{addressTypes: [ExternalIP, InternalIP]}");
        let nodes = node_map(&[
            (
                "node-a",
                &[
                    ("InternalIP", "2001:db8::a"),
                    ("ExternalIP", "2001:db8::e"),
                    ("InternalIP", "192.0.2.1"),
                    ("InternalIP", "2001:db8::e"),
                ],
            ),
            (
                "node-b",
                &[("ExternalIP", "fe80::1"), ("InternalIP", "2001:db8::b")],
            ),
        ]);
        let sel = select(&[pod("gw-1", "node-a"), pod("gw-2", "node-b")], &nodes, &p);
        assert_eq!(
            sel.by_family,
            vec![
                (IpFamily::IPv6, strings(&["2001:db8::b", "2001:db8::e"])),
                (IpFamily::IPv4, strings(&["192.0.2.1"])),
            ]
        );
        assert_eq!(
            sel.rejected,
            vec![
                rejected("node-a", "2001:db8::a", LessPreferredType),
                rejected("node-b", "fe80::1", LinkLocal),
            ]
        );

        // The default [InternalIP] never takes ExternalIP.
        let sel = select(
            &[pod("gw-1", "node-a")],
            &nodes,
            &policy(V6_PRIMARY, "{addressTypes: [InternalIP]}"),
        );
        assert_eq!(
            sel.external_ips,
            strings(&["2001:db8::a", "2001:db8::e", "192.0.2.1"])
        );
        assert_eq!(
            sel.rejected,
            vec![rejected(
                "node-a",
                "2001:db8::e",
                AddressTypeNotWanted(NodeAddressType::ExternalIP)
            )]
        );
    }

    #[test]
    fn two_replicas_on_two_nodes_are_sorted_and_deduplicated() {
        let nodes = node_map(&[
            (
                "node-b",
                &[("InternalIP", "2001:db8::1"), ("InternalIP", "192.0.2.2")],
            ),
            (
                "node-a",
                &[
                    ("InternalIP", "2001:DB8:0::1"),
                    ("InternalIP", "2001:db8::2"),
                    ("InternalIP", "192.0.2.1"),
                ],
            ),
        ]);
        let pods = [pod("gw-2", "node-b"), pod("gw-1", "node-a")];
        let sel = select(&pods, &nodes, &policy(V6_PRIMARY, ""));
        assert_eq!(
            sel,
            Selection {
                external_ips: strings(&["2001:db8::1", "2001:db8::2", "192.0.2.1", "192.0.2.2"]),
                by_family: vec![
                    (IpFamily::IPv6, strings(&["2001:db8::1", "2001:db8::2"])),
                    (IpFamily::IPv4, strings(&["192.0.2.1", "192.0.2.2"])),
                ],
                ready_pods: 2,
                nodes: strings(&["node-a", "node-b"]),
                missing_nodes: vec![],
                rejected: vec![],
            }
        );
    }

    #[test]
    fn two_pods_on_one_node_count_the_node_once() {
        let nodes = node_map(&[("node-a", &[("InternalIP", "2001:db8::1")])]);
        let pods = [pod("gw-1", "node-a"), pod("gw-2", "node-a")];
        let sel = select(&pods, &nodes, &policy(V6_ONLY, ""));
        assert_eq!(
            sel,
            Selection {
                external_ips: strings(&["2001:db8::1"]),
                by_family: vec![(IpFamily::IPv6, strings(&["2001:db8::1"]))],
                ready_pods: 2,
                nodes: strings(&["node-a"]),
                missing_nodes: vec![],
                rejected: vec![],
            }
        );
    }

    #[test]
    fn pods_that_do_not_serve_are_ignored() {
        let nodes = node_map(&[("node-a", &[("InternalIP", "2001:db8::1")])]);
        let pods = [
            GatewayPod {
                ready: false,
                ..pod("not-ready", "node-a")
            },
            GatewayPod {
                running: false,
                ..pod("pending", "node-a")
            },
            GatewayPod {
                node_name: None,
                ..pod("unscheduled", "")
            },
            pod("empty-node-name", ""),
            GatewayPod {
                deleting: true,
                ..pod("terminating", "node-a")
            },
        ];
        let p = policy(V6_ONLY, "");
        let sel = select(&pods, &nodes, &p);
        assert_eq!(
            sel,
            Selection {
                by_family: vec![(IpFamily::IPv6, vec![])],
                ..Selection::default()
            }
        );
        assert_eq!(
            verdict(&sel, &p),
            Verdict {
                ready: false,
                reason: reason::NO_GATEWAY_PODS,
                message: "no gateway Pod is running and ready on a node".into(),
            }
        );
    }

    #[test]
    fn a_node_missing_from_the_map_contributes_nothing() {
        let nodes = node_map(&[("node-a", &[("InternalIP", "2001:db8::1")])]);
        let pods = [pod("gw-1", "node-z"), pod("gw-2", "node-a")];
        let sel = select(&pods, &nodes, &policy(V6_ONLY, ""));
        assert_eq!(
            sel,
            Selection {
                external_ips: strings(&["2001:db8::1"]),
                by_family: vec![(IpFamily::IPv6, strings(&["2001:db8::1"]))],
                ready_pods: 2,
                nodes: strings(&["node-a"]),
                missing_nodes: strings(&["node-z"]),
                rejected: vec![],
            }
        );
    }

    #[test]
    fn merge_puts_ours_first_and_keeps_foreign_entries() {
        let current = strings(&["198.51.100.7", "2001:db8::10", "203.0.113.9"]);
        assert_eq!(
            merge_external_ips(&current, &[], &strings(&["2001:db8::10", "192.0.2.10"])),
            strings(&["2001:db8::10", "192.0.2.10", "198.51.100.7", "203.0.113.9"])
        );
    }

    #[test]
    fn merge_drops_what_was_ours_and_is_no_longer() {
        let current = strings(&["2001:db8::10", "2001:db8::11", "198.51.100.7"]);
        let before = strings(&["2001:db8::10", "2001:db8::11"]);
        assert_eq!(
            merge_external_ips(&current, &before, &strings(&["2001:db8::12"])),
            strings(&["2001:db8::12", "198.51.100.7"])
        );
        assert_eq!(
            merge_external_ips(&current, &current, &[]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn merge_deduplicates_by_canonical_form() {
        let current = strings(&[
            "2001:DB8:0::10",
            "2001:db8:0:0::99",
            "2001:db8::99",
            "not-an-ip",
            "not-an-ip",
        ]);
        let before = strings(&["2001:0db8::11"]);
        let ours = strings(&["2001:db8::10", "2001:DB8::10", "2001:db8::11"]);
        assert_eq!(
            merge_external_ips(&current, &before, &ours),
            strings(&["2001:db8::10", "2001:db8::11", "2001:db8::99", "not-an-ip"])
        );
    }

    #[test]
    fn verdict_published_names_the_addresses() {
        let nodes = node_map(&[
            ("node-a", &[("InternalIP", "2001:db8::10")]),
            ("node-b", &[("InternalIP", "192.0.2.10")]),
        ]);
        let p = policy(V6_PRIMARY, "");
        let sel = select(&[pod("a", "node-a"), pod("b", "node-b")], &nodes, &p);
        assert_eq!(
            verdict(&sel, &p),
            Verdict {
                ready: true,
                reason: reason::ADDRESSES_PUBLISHED,
                message: "2 addresses from 2 nodes: 2001:db8::10, 192.0.2.10".into(),
            }
        );

        let p = policy(V6_ONLY, "");
        let sel = select(&[pod("a", "node-a")], &nodes, &p);
        assert_eq!(
            verdict(&sel, &p).message,
            "1 address from 1 node: 2001:db8::10"
        );

        let many: Vec<String> = (1..=8).map(|i| format!("2001:db8::{i}")).collect();
        let addresses: Vec<(&str, &str)> =
            many.iter().map(|a| ("InternalIP", a.as_str())).collect();
        let sel = select(&[pod("a", "n")], &node_map(&[("n", &addresses)]), &p);
        assert_eq!(
            verdict(&sel, &p).message,
            "8 addresses from 1 node: 2001:db8::1, 2001:db8::2, 2001:db8::3, 2001:db8::4, 2001:db8::5, 2001:db8::6, and 2 more"
        );
    }

    #[test]
    fn verdict_names_the_missing_family_and_why() {
        let nodes = node_map(&[
            (
                "node-a",
                &[("InternalIP", "fe80::1"), ("InternalIP", "192.0.2.10")],
            ),
            (
                "node-b",
                &[("InternalIP", "192.0.2.11"), ("InternalIP", "fd00::1")],
            ),
        ]);
        let p = policy(V6_PRIMARY, "");
        let sel = select(&[pod("a", "node-a"), pod("b", "node-b")], &nodes, &p);
        assert_eq!(sel.missing_families(), vec![IpFamily::IPv6]);
        assert_eq!(
            verdict(&sel, &p),
            Verdict {
                ready: false,
                reason: reason::NO_ADDRESS_OF_FAMILY,
                message: "no eligible IPv6 address on nodes node-a, node-b (fe80::1 on node-a: link-local; fd00::1 on node-b: unique local, needs spec.gatewayAddresses.allowUniqueLocal)".into(),
            }
        );
    }

    #[test]
    fn verdict_caps_rejections_and_nodes() {
        let nodes = node_map(&[
            (
                "n1",
                &[("InternalIP", "fe80::1"), ("InternalIP", "garbage")],
            ),
            ("n2", &[("ExternalIP", "2001:db8::2")]),
            ("n3", &[("InternalIP", "2001:db8:9::3")]),
            ("n4", &[("InternalIP", "::1")]),
        ]);
        let p = policy(V6_ONLY, "{allowedCIDRs: [2001:db8:1::/48]}");
        let pods: Vec<GatewayPod> = ["n1", "n2", "n3", "n4", "n5"]
            .iter()
            .map(|n| pod(n, n))
            .collect();
        let sel = select(&pods, &nodes, &p);
        assert_eq!(
            verdict(&sel, &p).message,
            "no eligible IPv6 address on nodes n1, n2, n3, and 1 more (fe80::1 on n1: link-local; garbage on n1: not an IP address; 2001:db8::2 on n2: ExternalIP, not in spec.gatewayAddresses.addressTypes; and 2 more); node n5 not found"
        );
    }

    #[test]
    fn verdict_without_any_address_of_the_family() {
        let nodes = node_map(&[("node-a", &[("InternalIP", "192.0.2.10")])]);
        let p = policy(V6_PRIMARY, "{addressTypes: [ExternalIP, InternalIP]}");
        let sel = select(&[pod("a", "node-a")], &nodes, &p);
        assert_eq!(
            verdict(&sel, &p).message,
            "no eligible IPv6 address on node node-a (no IPv6 ExternalIP or InternalIP address reported)"
        );

        let sel = select(&[pod("a", "node-z")], &nodes, &p);
        assert_eq!(
            verdict(&sel, &p),
            Verdict {
                ready: false,
                reason: reason::NO_ADDRESS_OF_FAMILY,
                message: "no eligible IPv6 or IPv4 address; node node-z not found".into(),
            }
        );
    }

    #[test]
    fn verdict_with_both_families_missing() {
        let nodes = node_map(&[(
            "node-a",
            &[("InternalIP", "fe80::1"), ("InternalIP", "169.254.0.1")],
        )]);
        let p = policy(V4_PRIMARY, "");
        let sel = select(&[pod("a", "node-a")], &nodes, &p);
        assert_eq!(
            verdict(&sel, &p).message,
            "no eligible IPv4 or IPv6 address on node node-a (fe80::1 on node-a: link-local; 169.254.0.1 on node-a: link-local)"
        );
    }

    fn any_address() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[0-9a-fA-F:.%]{0,24}",
            any::<[u8; 4]>().prop_map(|b| Ipv4Addr::from(b).to_string()),
            any::<[u8; 16]>().prop_map(|b| Ipv6Addr::from(b).to_string().to_uppercase()),
            prop::sample::select(vec![
                "2001:db8::1",
                "2001:DB8:0::1",
                "fe80::1",
                "fd00::1",
                "10.0.0.1",
                "192.0.2.1",
                "192.0.2.01",
            ])
            .prop_map(String::from),
        ]
    }

    fn any_node_address() -> impl Strategy<Value = NodeAddress> {
        let kind = prop_oneof![
            prop::sample::select(vec!["InternalIP", "ExternalIP", "Hostname", "InternalDNS"])
                .prop_map(String::from),
            any::<String>(),
        ];
        (kind, any_address()).prop_map(|(kind, address)| NodeAddress { kind, address })
    }

    fn any_pod() -> impl Strategy<Value = GatewayPod> {
        (
            prop::option::of("node-[a-e]?"),
            any::<[bool; 3]>(),
            "gw-[0-9]",
        )
            .prop_map(|(node_name, [running, ready, deleting], name)| GatewayPod {
                name,
                node_name,
                running,
                ready,
                deleting,
            })
    }

    fn any_policy() -> impl Strategy<Value = ValidPolicy> {
        (
            prop::sample::select(vec![V6_ONLY, V4_ONLY, V6_PRIMARY, V4_PRIMARY]),
            prop::sample::select(vec![
                "[InternalIP]",
                "[ExternalIP]",
                "[ExternalIP, InternalIP]",
            ]),
            prop::sample::select(vec!["[]", "[2001:db8::/32, 192.0.2.0/24]", r#"["::/0"]"#]),
            any::<[bool; 2]>(),
        )
            .prop_map(|(base, types, cidrs, [ula, private])| {
                policy(
                    base,
                    &format!(
                        "{{addressTypes: {types}, allowedCIDRs: {cidrs}, allowUniqueLocal: {ula}, allowPrivateIPv4: {private}}}"
                    ),
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        #[test]
        fn random_input_never_panics_and_is_sorted_and_deterministic(
            pods in prop::collection::vec(any_pod(), 0..6),
            nodes in prop::collection::btree_map("node-[a-d]", prop::collection::vec(any_node_address(), 0..8), 0..4),
            p in any_policy(),
            current in prop::collection::vec(any_address(), 0..5),
            before in prop::collection::vec(any_address(), 0..3),
        ) {
            let sel = select(&pods, &nodes, &p);
            let reversed: Vec<GatewayPod> = pods.iter().rev().cloned().collect();
            prop_assert_eq!(&sel, &select(&reversed, &nodes, &p));

            prop_assert_eq!(sel.by_family.iter().map(|(f, _)| *f).collect::<Vec<_>>(), p.families.clone());
            let flat: Vec<String> = sel.by_family.iter().flat_map(|(_, ips)| ips.clone()).collect();
            prop_assert_eq!(&sel.external_ips, &flat);
            for (family, ips) in &sel.by_family {
                let parsed: Vec<IpAddr> = ips.iter().map(|s| s.parse().unwrap()).collect();
                prop_assert!(parsed.windows(2).all(|w| w[0] < w[1]), "not sorted/deduped: {:?}", ips);
                for (ip, s) in parsed.iter().zip(ips) {
                    prop_assert_eq!(family_of(ip), *family);
                    prop_assert_eq!(&ip.to_string(), s);
                }
            }
            prop_assert!(sel.nodes.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(sel.missing_nodes.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(sel.nodes.iter().all(|n| !sel.missing_nodes.contains(n)));

            let v = verdict(&sel, &p);
            prop_assert_eq!(v.ready, sel.ready_pods > 0 && sel.missing_families().is_empty());

            let merged = merge_external_ips(&current, &before, &sel.external_ips);
            prop_assert_eq!(&merged[..sel.external_ips.len()], &sel.external_ips[..]);
            let canon: BTreeSet<String> = merged.iter().map(|s| canonical(s)).collect();
            prop_assert_eq!(canon.len(), merged.len());
        }
    }
}
