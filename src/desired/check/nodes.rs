//! Node addresses under the policy's `gatewayAddresses` rules, judged by
//! [`crate::desired::gateway_addresses::judge_node`] (the same rules the
//! operator publishes by): how many nodes have an eligible address of each
//! family, and which gateway nodes have none.

use std::net::IpAddr;

use super::cidrs::capped;
use super::{Level, NodeFacts, Observed, Row, Scope, id};
use crate::api::IpFamily;
use crate::desired::gateway_addresses::{Rejected, judge_node};
use crate::desired::validate::ValidPolicy;

fn is_family(ip: &IpAddr, family: IpFamily) -> bool {
    matches!(
        (ip, family),
        (IpAddr::V4(_), IpFamily::IPv4) | (IpAddr::V6(_), IpFamily::IPv6)
    )
}

fn raw_is_family(raw: &str, family: IpFamily) -> bool {
    raw.parse::<IpAddr>().is_ok_and(|ip| is_family(&ip, family))
}

/// Whether `node` has an eligible address of `family`; if not, why its
/// addresses of that family were refused.
fn judged(node: &NodeFacts, family: IpFamily, policy: &ValidPolicy) -> Result<(), Vec<Rejected>> {
    let (picked, rejected) = judge_node(&node.name, &node.addresses, policy);
    if picked.iter().any(|ip| is_family(ip, family)) {
        return Ok(());
    }
    Err(rejected
        .into_iter()
        .filter(|r| raw_is_family(&r.address, family))
        .collect())
}

fn fix(family: IpFamily) -> String {
    format!(
        "give the nodes global {family} addresses, or widen spec.gatewayAddresses (addressTypes, allowedCIDRs, {})",
        match family {
            IpFamily::IPv6 => "allowUniqueLocal",
            IpFamily::IPv4 => "allowPrivateIPv4",
        }
    )
}

/// `node-addresses` and `gateway-nodes` rows of `family`.
pub(super) fn rows(observed: &Observed, family: IpFamily, policy: &ValidPolicy) -> Vec<Row> {
    let scope = Scope::Family(family);
    let mut out = Vec::new();
    let Some(nodes) = &observed.nodes else {
        return out;
    };
    if !nodes.is_empty() {
        let mut rejections = Vec::new();
        let mut eligible = 0;
        for node in nodes {
            match judged(node, family, policy) {
                Ok(()) => eligible += 1,
                Err(r) => rejections.extend(r.iter().map(Rejected::to_string)),
            }
        }
        let row = if eligible == 0 {
            let why = if rejections.is_empty() {
                format!("no {family} addresses at all")
            } else {
                capped(&rejections)
            };
            Row::new(
                scope,
                id::NODE_ADDRESSES,
                Level::Fail,
                format!("no node has an eligible {family} address ({why})"),
            )
            .fix(fix(family))
        } else {
            Row::new(
                scope,
                id::NODE_ADDRESSES,
                Level::Ok,
                format!(
                    "{eligible} of {} nodes have an eligible {family} address",
                    nodes.len()
                ),
            )
        };
        out.push(row);
    }
    let Some((selector, gateway_nodes)) = &observed.gateway else {
        return out;
    };
    if gateway_nodes.is_empty() {
        out.push(
            Row::new(
                scope,
                id::GATEWAY_NODES,
                Level::Warn,
                format!("no ready gateway Pods ({selector})"),
            )
            .fix(
                "install the gateway (or name its Pods with --gateway-selector), then check again",
            ),
        );
        return out;
    }
    let mut lacking = Vec::new();
    for name in gateway_nodes {
        match nodes.iter().find(|n| &n.name == name) {
            None => lacking.push(format!("{name} (Node not found)")),
            Some(node) => {
                if let Err(r) = judged(node, family, policy) {
                    let why: Vec<String> = r.iter().map(|r| r.reason.to_string()).collect();
                    let why = if why.is_empty() {
                        format!("no {family} address")
                    } else {
                        why.join("; ")
                    };
                    lacking.push(format!("{name} ({why})"));
                }
            }
        }
    }
    let on = capped(gateway_nodes);
    out.push(if lacking.is_empty() {
        Row::new(
            scope,
            id::GATEWAY_NODES,
            Level::Ok,
            format!("the gateway runs on {on}: each has an eligible {family} address"),
        )
    } else {
        Row::new(
            scope,
            id::GATEWAY_NODES,
            Level::Fail,
            format!(
                "gateway nodes without an eligible {family} address: {}",
                capped(&lacking)
            ),
        )
        .fix(fix(family))
    });
    out
}
