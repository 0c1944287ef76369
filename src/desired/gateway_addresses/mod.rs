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

/// What one node would contribute under `policy`, as [`select`] judges it:
/// the addresses taken and the rejected ones with their reasons (what
/// `dualmesh check` counts per node).
pub fn judge_node(
    node: &str,
    addresses: &[NodeAddress],
    policy: &ValidPolicy,
) -> (Vec<IpAddr>, Vec<Rejected>) {
    let mut rejected = Vec::new();
    let picked = node_selection(node, addresses, policy, &mut rejected);
    (picked, rejected)
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
mod tests;
