//! Prometheus metrics of `dualmesh run`, served as OpenMetrics text on
//! `/metrics`. Label values are object keys and fixed words only: never
//! Secret names' contents, addresses of members' API servers or messages.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Which controller a reconcile belongs to.
pub const MESHCLUSTER: &str = "meshcluster";
/// The DualStackPolicy status controller.
pub const POLICY: &str = "dualstackpolicy";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    controller: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    controller: String,
    category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectLabels {
    namespace: String,
    meshcluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FamilyLabels {
    namespace: String,
    meshcluster: String,
    family: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

fn duration_histogram() -> Histogram {
    // 5 ms .. ~20 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

/// What one MeshCluster reconcile found, for the per-object gauges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeshClusterFigures {
    /// IPv4 and IPv6 addresses written to the gateway Service.
    pub ipv4_addresses: usize,
    pub ipv6_addresses: usize,
    /// Secrets in sync on the target cluster.
    pub secrets_synced: usize,
    /// When the intermediate CA in `cacerts` expires, Unix seconds (None: no `spec.trust`).
    pub trust_expiry: Option<i64>,
    /// Whether `RemoteSecretsSynced` is True (None: no `spec.remoteSecrets`).
    pub remote_secrets_synced: Option<bool>,
    /// Whether the target cluster answered (None: not looked at this pass).
    pub reachable: Option<bool>,
    /// Whether the MeshCluster is Ready.
    pub ready: bool,
}

/// Every metric dualmesh exports.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    gateway_addresses: Family<FamilyLabels, Gauge>,
    secrets_synced: Family<ObjectLabels, Gauge>,
    trust_expiry: Family<ObjectLabels, Gauge>,
    remote_secrets_synced: Family<ObjectLabels, Gauge>,
    member_reachable: Family<ObjectLabels, Gauge>,
    ready: Family<ObjectLabels, Gauge>,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "dualmesh_reconciles",
            "Reconciles run, by controller and result (success, error)",
            reconciles.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "dualmesh_reconcile_errors",
            "Failures by controller and error category (conflict, forbidden, invalid, not-found, throttled, server, api, transport, fenced, serialization, not-ours, cache, finalizer, leader, other); a reconcile whose jobs failed in several ways counts each",
            errors.clone(),
        );
        let duration =
            Family::<ControllerLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        registry.register_with_unit(
            "dualmesh_reconcile_duration",
            "Time one reconcile took, by controller",
            Unit::Seconds,
            duration.clone(),
        );
        let gateway_addresses = Family::<FamilyLabels, Gauge>::default();
        registry.register(
            "dualmesh_gateway_addresses",
            "Addresses in the gateway Service's externalIPs, per MeshCluster and IP family",
            gateway_addresses.clone(),
        );
        let secrets_synced = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "dualmesh_secrets_synced",
            "Secrets in sync on the MeshCluster's target cluster",
            secrets_synced.clone(),
        );
        let trust_expiry = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "dualmesh_trust_intermediate_expiry_timestamp_seconds",
            "When the intermediate CA in the MeshCluster's cacerts expires (Unix time; spec.trust only)",
            trust_expiry.clone(),
        );
        let remote_secrets_synced = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "dualmesh_remote_secrets_synced",
            "1 when the MeshCluster's cluster holds its peers' remote secrets and offers its own (spec.remoteSecrets only)",
            remote_secrets_synced.clone(),
        );
        let member_reachable = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "dualmesh_member_reachable",
            "1 when the MeshCluster's target cluster answered at the last reconcile, else 0",
            member_reachable.clone(),
        );
        let ready = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "dualmesh_meshcluster_ready",
            "1 when the MeshCluster is Ready, else 0",
            ready.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "dualmesh_leader",
            "1 while this process holds the leader Lease (or runs without leader election), else 0",
            leader.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        registry.register("dualmesh_build_info", "The running version", build);
        Self {
            registry,
            reconciles,
            errors,
            duration,
            gateway_addresses,
            secrets_synced,
            trust_expiry,
            remote_secrets_synced,
            member_reachable,
            ready,
            leader,
        }
    }

    /// Counts a finished reconcile of `controller` and its duration, and
    /// each of its failures under its category (none: it succeeded).
    pub fn reconciled(&self, controller: &str, took: Duration, errors: &[&str]) {
        let result = if errors.is_empty() {
            "success"
        } else {
            "error"
        };
        self.reconciles
            .get_or_create(&ResultLabels {
                controller: controller.into(),
                result: result.into(),
            })
            .inc();
        for category in errors {
            self.errors
                .get_or_create(&ErrorLabels {
                    controller: controller.into(),
                    category: (*category).into(),
                })
                .inc();
        }
        self.duration
            .get_or_create(&ControllerLabels {
                controller: controller.into(),
            })
            .observe(took.as_secs_f64());
    }

    /// Sets the per-MeshCluster gauges.
    pub fn meshcluster(&self, namespace: &str, name: &str, figures: &MeshClusterFigures) {
        let object = ObjectLabels {
            namespace: namespace.into(),
            meshcluster: name.into(),
        };
        for (family, n) in [
            ("IPv4", figures.ipv4_addresses),
            ("IPv6", figures.ipv6_addresses),
        ] {
            self.gateway_addresses
                .get_or_create(&FamilyLabels {
                    namespace: namespace.into(),
                    meshcluster: name.into(),
                    family: family.into(),
                })
                .set(gauge_value(n));
        }
        self.secrets_synced
            .get_or_create(&object)
            .set(gauge_value(figures.secrets_synced));
        match figures.trust_expiry {
            Some(t) => {
                self.trust_expiry.get_or_create(&object).set(t);
            }
            None => {
                self.trust_expiry.remove(&object);
            }
        }
        match figures.remote_secrets_synced {
            Some(synced) => {
                self.remote_secrets_synced
                    .get_or_create(&object)
                    .set(i64::from(synced));
            }
            None => {
                self.remote_secrets_synced.remove(&object);
            }
        }
        if let Some(reachable) = figures.reachable {
            self.member_reachable
                .get_or_create(&object)
                .set(i64::from(reachable));
        }
        self.ready
            .get_or_create(&object)
            .set(i64::from(figures.ready));
    }

    /// Drops the series of a deleted MeshCluster.
    pub fn forget_meshcluster(&self, namespace: &str, name: &str) {
        let object = ObjectLabels {
            namespace: namespace.into(),
            meshcluster: name.into(),
        };
        for family in ["IPv4", "IPv6"] {
            self.gateway_addresses.remove(&FamilyLabels {
                namespace: namespace.into(),
                meshcluster: name.into(),
                family: family.into(),
            });
        }
        self.secrets_synced.remove(&object);
        self.trust_expiry.remove(&object);
        self.remote_secrets_synced.remove(&object);
        self.member_reachable.remove(&object);
        self.ready.remove(&object);
    }

    /// Whether this process leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_with<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        let mut lines: Vec<&str> = text.lines().filter(|l| l.starts_with(prefix)).collect();
        lines.sort();
        lines
    }

    #[test]
    fn reconciles_errors_and_durations_are_counted() {
        let m = Metrics::new();
        m.reconciled(MESHCLUSTER, Duration::from_millis(20), &[]);
        m.reconciled(MESHCLUSTER, Duration::from_millis(3), &["forbidden"]);
        m.reconciled(POLICY, Duration::from_secs(1), &[]);
        let text = m.encode();
        assert_eq!(
            lines_with(&text, "dualmesh_reconciles_total"),
            vec![
                r#"dualmesh_reconciles_total{controller="dualstackpolicy",result="success"} 1"#,
                r#"dualmesh_reconciles_total{controller="meshcluster",result="error"} 1"#,
                r#"dualmesh_reconciles_total{controller="meshcluster",result="success"} 1"#,
            ]
        );
        assert_eq!(
            lines_with(&text, "dualmesh_reconcile_errors_total"),
            vec![
                r#"dualmesh_reconcile_errors_total{controller="meshcluster",category="forbidden"} 1"#
            ]
        );
        assert!(
            text.contains(
                r#"dualmesh_reconcile_duration_seconds_count{controller="meshcluster"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"dualmesh_reconcile_duration_seconds_bucket{le="0.005",controller="meshcluster"} 1"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn per_meshcluster_gauges_are_set_and_forgotten() {
        let m = Metrics::new();
        let figures = MeshClusterFigures {
            ipv4_addresses: 1,
            ipv6_addresses: 2,
            secrets_synced: 2,
            trust_expiry: Some(1_827_828_000),
            remote_secrets_synced: Some(false),
            reachable: Some(true),
            ready: true,
        };
        m.meshcluster("dualmesh-system", "beta", &figures);
        let text = m.encode();
        assert_eq!(
            lines_with(&text, "dualmesh_gateway_addresses{"),
            vec![
                r#"dualmesh_gateway_addresses{namespace="dualmesh-system",meshcluster="beta",family="IPv4"} 1"#,
                r#"dualmesh_gateway_addresses{namespace="dualmesh-system",meshcluster="beta",family="IPv6"} 2"#,
            ]
        );
        assert_eq!(
            lines_with(&text, "dualmesh_member_reachable{"),
            vec![r#"dualmesh_member_reachable{namespace="dualmesh-system",meshcluster="beta"} 1"#]
        );
        assert_eq!(
            lines_with(&text, "dualmesh_secrets_synced{"),
            vec![r#"dualmesh_secrets_synced{namespace="dualmesh-system",meshcluster="beta"} 2"#]
        );
        assert_eq!(
            lines_with(
                &text,
                "dualmesh_trust_intermediate_expiry_timestamp_seconds{"
            ),
            vec![
                r#"dualmesh_trust_intermediate_expiry_timestamp_seconds{namespace="dualmesh-system",meshcluster="beta"} 1827828000"#
            ]
        );
        assert_eq!(
            lines_with(&text, "dualmesh_remote_secrets_synced{"),
            vec![
                r#"dualmesh_remote_secrets_synced{namespace="dualmesh-system",meshcluster="beta"} 0"#
            ]
        );
        // spec.trust and spec.remoteSecrets removed: their series go.
        let untrusted = MeshClusterFigures {
            trust_expiry: None,
            remote_secrets_synced: None,
            ..figures.clone()
        };
        m.meshcluster("dualmesh-system", "beta", &untrusted);
        assert!(lines_with(&m.encode(), "dualmesh_trust_intermediate").is_empty());
        assert!(lines_with(&m.encode(), "dualmesh_remote_secrets").is_empty());
        m.forget_meshcluster("dualmesh-system", "beta");
        let text = m.encode();
        assert!(!text.contains(r#"meshcluster="beta""#), "{text}");
    }

    #[test]
    fn leader_and_build_info() {
        let m = Metrics::new();
        assert!(m.encode().contains("dualmesh_leader 0\n"));
        m.set_leader(true);
        let text = m.encode();
        assert!(text.contains("dualmesh_leader 1\n"), "{text}");
        assert!(text.contains(&format!(
            "dualmesh_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
    }
}
