//! Status conditions: merging what a reconcile found into what the object
//! already says, and the `Ready` summary. Pure: the time is passed in.
//!
//! A condition keeps its `lastTransitionTime` while its status stays the
//! same (only reason or message changed), as `meta.SetStatusCondition` does
//! in Go, so a reconcile that finds nothing new produces a status equal to the
//! stored one and no write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::conditions::{self as types, reason};

/// One condition as a reconcile computed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Found {
    /// A `True` condition.
    pub fn ok(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: true,
            reason,
            message: message.into(),
        }
    }

    /// A `False` condition.
    pub fn fail(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: false,
            reason,
            message: message.into(),
        }
    }
}

fn status_str(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// Kubernetes caps a condition message at 32768 bytes; ours stay far below,
/// but a message built from user input must never make the status invalid.
const MAX_MESSAGE: usize = 4096;

fn clip(message: &str) -> String {
    if message.len() <= MAX_MESSAGE {
        return message.to_string();
    }
    let mut end = MAX_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

/// The order conditions are listed in; other types follow, by name.
pub const ORDER: [&str; 7] = [
    types::READY,
    types::VALID,
    types::CLUSTER_REACHABLE,
    types::ISTIO_CONFIG_APPLIED,
    types::GATEWAY_ADDRESSES_READY,
    types::SECRETS_SYNCED,
    types::CLUSTER_MATCHES_POLICY,
];

fn rank(type_: &str) -> (usize, String) {
    let i = ORDER
        .iter()
        .position(|t| *t == type_)
        .unwrap_or(ORDER.len());
    (i, type_.to_string())
}

/// Merges `found` into `existing`: conditions of the types in `found` are
/// replaced (keeping `lastTransitionTime` when the status did not change);
/// the others are kept as they are (a reconcile that stopped early leaves
/// them describing what is still in the cluster). Ordered by [`ORDER`].
pub fn merge(
    existing: &[Condition],
    found: &[Found],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    // A type found twice: the later finding wins.
    let found: Vec<&Found> = found
        .iter()
        .enumerate()
        .filter(|(i, f)| !found[i + 1..].iter().any(|g| g.type_ == f.type_))
        .map(|(_, f)| f)
        .collect();
    let mut out: Vec<Condition> = found
        .iter()
        .map(|f| {
            let message = clip(&f.message);
            let status = status_str(f.status).to_string();
            let old = existing.iter().find(|c| c.type_ == f.type_);
            let since = match old {
                Some(c) if c.status == status => c.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: f.type_.to_string(),
                status,
                reason: f.reason.to_string(),
                message,
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect();
    for c in existing {
        if !found.iter().any(|f| f.type_ == c.type_) {
            out.push(c.clone());
        }
    }
    out.sort_by_key(|c| rank(&c.type_));
    out
}

/// [`merge`], then the `Ready` summary of the result merged in too: the
/// whole condition list a reconcile writes.
pub fn merge_with_ready(
    existing: &[Condition],
    found: &[Found],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let merged = merge(existing, found, generation, now);
    let mut all = found.to_vec();
    all.push(ready(&merged));
    merge(existing, &all, generation, now)
}

/// The `Ready` condition summarizing `conditions` (all but `Ready` itself
/// and the [`types::INFORMATIVE`] ones): True when every one is True, else
/// False naming the ones that are not, with the first one's reason and
/// message.
pub fn ready(conditions: &[Condition]) -> Found {
    let failing: Vec<&Condition> = conditions
        .iter()
        .filter(|c| c.type_ != types::READY && !types::INFORMATIVE.contains(&c.type_.as_str()))
        .filter(|c| c.status != "True")
        .collect();
    match failing.first() {
        None => Found::ok(types::READY, reason::READY, "all conditions are True"),
        Some(first) => {
            let names: Vec<&str> = failing.iter().map(|c| c.type_.as_str()).collect();
            Found::fail(
                types::READY,
                reason::NOT_READY,
                format!(
                    "not True: {} ({}: {})",
                    names.join(", "),
                    first.reason,
                    first.message
                ),
            )
        }
    }
}

/// The conditions whose status or reason differ between `old` and `new`
/// (or that are new): what deserves an Event. A new message alone (the
/// gateway's addresses moved, one more Secret synced) is not an Event: the
/// condition and the info log say it, and a busy cluster's Events stay
/// about changes of state.
pub fn changed<'a>(old: &[Condition], new: &'a [Condition]) -> Vec<&'a Condition> {
    new.iter()
        .filter(|n| {
            !old.iter()
                .any(|o| o.type_ == n.type_ && o.status == n.status && o.reason == n.reason)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn cond(type_: &str, status: &str, reason: &str, message: &str, t: i64) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: Some(1),
            last_transition_time: at(t),
        }
    }

    #[test]
    fn new_conditions_get_the_current_time() {
        let merged = merge(
            &[],
            &[Found::ok("Valid", "Valid", "spec is valid")],
            Some(3),
            &at(100),
        );
        assert_eq!(
            merged,
            vec![Condition {
                observed_generation: Some(3),
                ..cond("Valid", "True", "Valid", "spec is valid", 100)
            }]
        );
    }

    #[test]
    fn same_status_keeps_the_transition_time_even_when_the_message_changes() {
        let old = vec![cond("Valid", "False", "InvalidSpec", "a: bad", 10)];
        let merged = merge(
            &old,
            &[Found::fail("Valid", "InvalidSpec", "b: bad")],
            Some(1),
            &at(99),
        );
        assert_eq!(
            merged,
            vec![cond("Valid", "False", "InvalidSpec", "b: bad", 10)]
        );
    }

    #[test]
    fn a_flip_moves_the_transition_time() {
        let old = vec![cond("Valid", "False", "InvalidSpec", "a: bad", 10)];
        let merged = merge(&old, &[Found::ok("Valid", "Valid", "ok")], Some(1), &at(99));
        assert_eq!(merged, vec![cond("Valid", "True", "Valid", "ok", 99)]);
    }

    #[test]
    fn types_not_found_are_kept_and_everything_is_ordered() {
        let old = vec![
            cond("Zeta", "True", "Old", "other", 3),
            cond(
                "GatewayAddressesReady",
                "True",
                "AddressesPublished",
                "x",
                2,
            ),
            cond("Valid", "True", "Valid", "ok", 1),
        ];
        let merged = merge(
            &old,
            &[
                Found::fail("Valid", "InvalidSpec", "spec.network: bad"),
                Found::fail("Ready", "NotReady", "not True: Valid"),
            ],
            Some(2),
            &at(50),
        );
        assert_eq!(
            merged,
            vec![
                Condition {
                    observed_generation: Some(2),
                    ..cond("Ready", "False", "NotReady", "not True: Valid", 50)
                },
                Condition {
                    observed_generation: Some(2),
                    ..cond("Valid", "False", "InvalidSpec", "spec.network: bad", 50)
                },
                cond(
                    "GatewayAddressesReady",
                    "True",
                    "AddressesPublished",
                    "x",
                    2
                ),
                cond("Zeta", "True", "Old", "other", 3),
            ]
        );
    }

    #[test]
    fn merging_twice_is_a_fixed_point() {
        let found = [
            Found::ok("Valid", "Valid", "ok"),
            Found::fail("IstioConfigApplied", "ApplyFailed", "boom"),
        ];
        let once = merge(&[], &found, Some(2), &at(5));
        let twice = merge(&once, &found, Some(2), &at(500));
        assert_eq!(once, twice);
        assert!(changed(&once, &twice).is_empty());
    }

    #[test]
    fn a_cluster_that_does_not_match_its_policy_informs_without_blocking_ready() {
        assert_eq!(
            ready(&[
                cond("Valid", "True", "Valid", "ok", 1),
                cond(
                    "ClusterMatchesPolicy",
                    "False",
                    "ServiceCIDRMismatch",
                    "IPv6 service-cidr: ...",
                    1
                ),
            ]),
            Found::ok("Ready", "Ready", "all conditions are True")
        );
    }

    #[test]
    fn ready_names_what_is_not_true() {
        assert_eq!(
            ready(&[
                cond("Ready", "False", "NotReady", "old", 1),
                cond("Valid", "True", "Valid", "ok", 1)
            ]),
            Found::ok("Ready", "Ready", "all conditions are True")
        );
        assert_eq!(
            ready(&[
                cond("Valid", "True", "Valid", "ok", 1),
                cond("IstioConfigApplied", "False", "ApplyFailed", "forbidden", 1),
                cond(
                    "GatewayAddressesReady",
                    "Unknown",
                    "NoGatewayPods",
                    "none",
                    1
                ),
            ]),
            Found::fail(
                "Ready",
                "NotReady",
                "not True: IstioConfigApplied, GatewayAddressesReady (ApplyFailed: forbidden)"
            )
        );
    }

    #[test]
    fn a_type_found_twice_keeps_the_later_finding() {
        let merged = merge(
            &[],
            &[
                Found::ok("ClusterReachable", "Reachable", "answers"),
                Found::fail("ClusterReachable", "Unreachable", "timed out"),
            ],
            Some(1),
            &at(7),
        );
        assert_eq!(
            merged,
            vec![cond(
                "ClusterReachable",
                "False",
                "Unreachable",
                "timed out",
                7
            )]
        );
    }

    #[test]
    fn merge_with_ready_summarizes_found_and_kept_conditions() {
        let old = vec![cond("SecretsSynced", "False", "SourceMissing", "gone", 4)];
        let merged = merge_with_ready(&old, &[Found::ok("Valid", "Valid", "ok")], Some(2), &at(9));
        assert_eq!(
            merged,
            vec![
                Condition {
                    observed_generation: Some(2),
                    ..cond(
                        "Ready",
                        "False",
                        "NotReady",
                        "not True: SecretsSynced (SourceMissing: gone)",
                        9
                    )
                },
                Condition {
                    observed_generation: Some(2),
                    ..cond("Valid", "True", "Valid", "ok", 9)
                },
                cond("SecretsSynced", "False", "SourceMissing", "gone", 4),
            ]
        );
    }

    #[test]
    fn long_messages_are_clipped_on_a_char_boundary() {
        let long = "é".repeat(3000);
        let merged = merge(
            &[],
            &[Found::fail("Valid", "InvalidSpec", long)],
            None,
            &at(1),
        );
        assert!(merged[0].message.len() <= MAX_MESSAGE + 3);
        assert!(merged[0].message.ends_with("..."));
    }

    #[test]
    fn changed_lists_only_differences() {
        let old = vec![
            cond("Valid", "True", "Valid", "ok", 1),
            cond("Ready", "False", "NotReady", "x", 1),
        ];
        let new = vec![
            cond("Valid", "True", "Valid", "ok", 1),
            cond("Ready", "True", "Ready", "all", 2),
        ];
        assert_eq!(changed(&old, &new), vec![&new[1]]);
        // A message alone is no Event; a condition seen first is one.
        let moved = vec![
            cond("Valid", "True", "Valid", "addresses now [b]", 1),
            cond("Ready", "True", "Ready", "all", 2),
            cond("SecretsSynced", "True", "Synced", "2", 2),
        ];
        assert_eq!(changed(&new, &moved), vec![&moved[2]]);
    }
}
