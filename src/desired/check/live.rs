//! The live `ClusterMatchesPolicy` condition: the checks of
//! [`super::cidrs`] on what the operator watches cheaply (ServiceCIDRs, the
//! podCIDRs of its stripped Node cache). False with the first failing row
//! and its fix; warnings (a CNI that allocates Pod addresses itself, no
//! Nodes yet) leave it True, so its message does not change as nodes come
//! and go.

use super::{Level, Observed, id, pod_cidr_rows, service_cidr_rows};
use crate::api::conditions::{self as types, reason};
use crate::desired::conditions::Found;
use crate::desired::validate::ValidPolicy;

/// The condition for `policy` (named `name`) on what was `observed`.
pub fn cluster_matches(observed: &Observed, name: &str, policy: &ValidPolicy) -> Found {
    let rows = policy.families.iter().flat_map(|f| {
        service_cidr_rows(observed, *f, policy)
            .into_iter()
            .chain(pod_cidr_rows(observed, *f, policy))
    });
    for row in rows {
        if row.level != Level::Fail {
            continue;
        }
        let why = if row.check == id::SERVICE_CIDR {
            reason::SERVICE_CIDR_MISMATCH
        } else {
            reason::POD_CIDR_MISMATCH
        };
        let fix = row.fix.map(|f| format!("; fix: {f}")).unwrap_or_default();
        return Found::fail(
            types::CLUSTER_MATCHES_POLICY,
            why,
            format!("{} {}: {}{fix}", row.scope.as_str(), row.check, row.saw),
        );
    }
    Found::ok(
        types::CLUSTER_MATCHES_POLICY,
        reason::CLUSTER_MATCHES,
        format!("the cluster's ServiceCIDRs and node podCIDRs match DualStackPolicy {name}"),
    )
}
