//! The Service CIDRs the cluster really has (its `ServiceCIDR` objects) and
//! the Pod CIDRs its nodes were given, against the policy's `addressPlan`.

use ipnet::IpNet;

use super::{Level, Observed, Row, Scope, id};
use crate::api::IpFamily;
use crate::desired::validate::ValidPolicy;

/// How many node names a message lists before "and N more".
pub(super) const LISTED: usize = 3;

pub(super) fn family_of(net: &IpNet) -> IpFamily {
    match net {
        IpNet::V4(_) => IpFamily::IPv4,
        IpNet::V6(_) => IpFamily::IPv6,
    }
}

/// `a, b, c and 2 more`.
pub(super) fn capped(items: &[String]) -> String {
    if items.len() <= LISTED {
        return items.join(", ");
    }
    format!(
        "{} and {} more",
        items[..LISTED].join(", "),
        items.len() - LISTED
    )
}

/// `addressPlan.ipv6`.
fn plan_field(family: IpFamily) -> String {
    format!("addressPlan.{}", family.as_str().to_lowercase())
}

/// The ServiceCIDR row of `family` (none when ServiceCIDRs were not fetched).
pub fn service_cidr_rows(observed: &Observed, family: IpFamily, policy: &ValidPolicy) -> Vec<Row> {
    let scope = Scope::Family(family);
    let row = |level, saw: String| Row::new(scope, id::SERVICE_CIDR, level, saw);
    let field = format!("{}.serviceCIDR", plan_field(family));
    let want = policy.plans.get(&family).and_then(|p| p.service_cidr);
    if observed.service_cidr_api_missing {
        return vec![
            row(
                Level::Warn,
                "networking.k8s.io/v1 ServiceCIDR is not served (Kubernetes before 1.33)".into(),
            )
            .fix(format!(
                "compare {field} with kube-apiserver --service-cluster-ip-range by hand"
            )),
        ];
    }
    let Some(objects) = &observed.service_cidrs else {
        return Vec::new();
    };
    let mut have: Vec<(String, IpNet)> = objects
        .iter()
        .flat_map(|o| {
            o.cidrs
                .iter()
                .filter_map(|c| c.parse::<IpNet>().ok())
                .map(|n| (o.name.clone(), n))
        })
        .filter(|(_, n)| family_of(n) == family)
        .collect();
    have.sort();
    let listed: Vec<String> = have.iter().map(|(o, n)| format!("{o} {n}")).collect();
    let listed = listed.join(", ");
    if have.is_empty() {
        let fix = match want {
            Some(w) => format!(
                "add {w} to kube-apiserver --service-cluster-ip-range, or create a ServiceCIDR with it"
            ),
            None => format!(
                "add an {family} range to kube-apiserver --service-cluster-ip-range, or create a ServiceCIDR with one"
            ),
        };
        let all: Vec<String> = objects.iter().map(|o| o.name.clone()).collect();
        let saw = if all.is_empty() {
            "no ServiceCIDR objects".to_string()
        } else {
            format!("no {family} range in ServiceCIDRs {}", capped(&sorted(all)))
        };
        return vec![row(Level::Fail, saw).fix(fix)];
    }
    let Some(want) = want else {
        return vec![row(
            Level::Ok,
            format!("ServiceCIDR {listed}; the policy sets no {field}"),
        )];
    };
    if have.iter().any(|(_, n)| *n == want) {
        return vec![row(
            Level::Ok,
            format!("{field} {want} is ServiceCIDR {listed}"),
        )];
    }
    if let Some((o, n)) = have.iter().find(|(_, n)| n.contains(&want)) {
        return vec![
            row(
                Level::Warn,
                format!("{field} {want} is smaller than ServiceCIDR {o} {n}"),
            )
            .fix(format!(
                "set {field} to {n}: Services may get addresses outside {want}"
            )),
        ];
    }
    if let Some((o, n)) = have.iter().find(|(_, n)| want.contains(n)) {
        return vec![
            row(
                Level::Warn,
                format!("{field} {want} is larger than ServiceCIDR {o} {n}"),
            )
            .fix(format!(
                "set {field} to {n}, or create a ServiceCIDR for the rest of {want}"
            )),
        ];
    }
    let first = have[0].1;
    vec![
        row(
            Level::Fail,
            format!("{field} {want} is not a Service range of the cluster: ServiceCIDR {listed}"),
        )
        .fix(format!(
            "set {field} to {first}, or create a ServiceCIDR with {want}"
        )),
    ]
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The node podCIDR row of `family` (none when Nodes were not fetched).
pub fn pod_cidr_rows(observed: &Observed, family: IpFamily, policy: &ValidPolicy) -> Vec<Row> {
    let scope = Scope::Family(family);
    let row = |level, saw: String| Row::new(scope, id::POD_CIDR, level, saw);
    let Some(nodes) = &observed.nodes else {
        return Vec::new();
    };
    if nodes.is_empty() {
        return vec![row(Level::Warn, "no Nodes".into()).fix("join nodes, then check again")];
    }
    let base = plan_field(family);
    let plan = policy.plans.get(&family);
    let want = plan.and_then(|p| p.pod_cidr);
    let mask = plan.and_then(|p| p.node_cidr_mask_size);
    let mut lacking = Vec::new();
    let mut outside = Vec::new();
    let mut wrong_size = Vec::new();
    let mut seen = Vec::new();
    for node in nodes {
        let mine: Vec<IpNet> = node
            .pod_cidrs
            .iter()
            .filter_map(|c| c.parse::<IpNet>().ok())
            .filter(|n| family_of(n) == family)
            .collect();
        if mine.is_empty() {
            lacking.push(node.name.clone());
        }
        for net in mine {
            seen.push(net);
            if let Some(w) = want
                && !w.contains(&net)
            {
                outside.push(format!("{} {net}", node.name));
            } else if let Some(m) = mask
                && net.prefix_len() != m
            {
                wrong_size.push(format!("{} {net}", node.name));
            }
        }
    }
    let fix_allocation = format!(
        "expected when the CNI allocates Pod addresses itself (e.g. Calico IPAM); otherwise run kube-controller-manager with --allocate-node-cidrs and an {family} range in --cluster-cidr"
    );
    if !outside.is_empty() {
        let w = want.expect("outside implies a podCIDR");
        return vec![
            row(
                Level::Fail,
                format!("podCIDRs outside {base}.podCIDR {w}: {}", capped(&outside)),
            )
            .fix(format!(
                "set {base}.podCIDR to kube-controller-manager's {family} --cluster-cidr"
            )),
        ];
    }
    if !wrong_size.is_empty() {
        let m = mask.expect("wrong size implies a mask");
        return vec![
            row(
                Level::Fail,
                format!(
                    "podCIDRs not /{m} ({base}.nodeCIDRMaskSize): {}",
                    capped(&wrong_size)
                ),
            )
            .fix(format!(
                "set {base}.nodeCIDRMaskSize to kube-controller-manager's --node-cidr-mask-size-{}",
                family.as_str().to_lowercase()
            )),
        ];
    }
    if lacking.len() == nodes.len() {
        return vec![
            row(
                Level::Warn,
                format!("none of {} nodes has an {family} podCIDR", nodes.len()),
            )
            .fix(fix_allocation),
        ];
    }
    if !lacking.is_empty() {
        return vec![
            row(
                Level::Warn,
                format!(
                    "{} of {} nodes lack an {family} podCIDR: {}",
                    lacking.len(),
                    nodes.len(),
                    capped(&lacking)
                ),
            )
            .fix(fix_allocation),
        ];
    }
    let within = match (want, mask) {
        (Some(w), Some(m)) => format!(", each a /{m} inside {w}"),
        (Some(w), None) => format!(", each inside {w}"),
        (None, Some(m)) => format!(", each a /{m}"),
        (None, None) => {
            seen.sort();
            format!(" (e.g. {})", seen[0])
        }
    };
    vec![row(
        Level::Ok,
        format!(
            "{} of {} nodes have an {family} podCIDR{within}",
            nodes.len(),
            nodes.len()
        ),
    )]
}
