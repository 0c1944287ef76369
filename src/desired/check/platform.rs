//! The cluster-wide rows: the API server's version against the CRDs' needs,
//! whether a Service may carry `spec.externalIPs`, and the installed Istio
//! against dual-stack support.

use super::{ExternalIpsProbe, Istiod, Level, Observed, Row, Scope, Version, id};
use crate::desired::validate::ValidPolicy;

/// The CRDs' CEL rules use `isCIDR`, `cidr()` and `ip()`: Kubernetes 1.31+.
const CEL_IP_LIBRARIES: Version = Version::new(1, 31);
/// Dual-stack in Istio: alpha since 1.24, beta since 1.28, and the east-west
/// gateway's EDS filtered by family since 1.30.
const DUAL_STACK_ALPHA: Version = Version::new(1, 24);
const DUAL_STACK_BETA: Version = Version::new(1, 28);
const FAMILY_FILTERED_EDS: Version = Version::new(1, 30);

/// The version in an image reference's tag: `docker.io/istio/pilot:1.28.1-distroless` -> 1.28.
pub fn version_of_image(image: &str) -> Option<Version> {
    let last = image.rsplit('/').next()?;
    let last = last.split('@').next()?;
    let (_, tag) = last.split_once(':')?;
    Version::parse(tag)
}

/// The text of a `Warning` response header (`299 - "text"`, RFC 7234).
pub fn parse_warning(header: &str) -> String {
    let mut parts = header.splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(code), Some(_agent), Some(text)) if code.len() == 3 => {
            text.trim().trim_matches('"').replace("\\\"", "\"")
        }
        _ => header.trim().to_string(),
    }
}

pub(super) fn rows(observed: &Observed, policy: &ValidPolicy) -> Vec<Row> {
    let mut out = Vec::new();
    if let Some(v) = &observed.api_server_version {
        out.push(api_server(v));
    }
    if let Some(probe) = &observed.external_ips {
        out.push(external_ips(probe));
    }
    if let Some(istiod) = &observed.istiod {
        out.extend(istio(istiod.as_ref(), &observed.sail_istio, policy));
    }
    out
}

fn api_server(raw: &str) -> Row {
    let row = |level, saw: String| Row::new(Scope::Cluster, id::API_SERVER_VERSION, level, saw);
    match Version::parse(raw) {
        None => row(
            Level::Warn,
            format!("cannot read the API server version {raw:?}"),
        )
        .fix("make sure it is Kubernetes 1.31 or later (the CRDs' CEL IP/CIDR libraries)"),
        Some(v) if v < CEL_IP_LIBRARIES => row(
            Level::Fail,
            format!("Kubernetes {raw}: the CRDs' CEL rules (isCIDR, cidr()) need 1.31 or later"),
        )
        .fix("upgrade the API server to Kubernetes 1.31 or later"),
        Some(_) => row(
            Level::Ok,
            format!("Kubernetes {raw} (the CRDs' CEL IP/CIDR libraries need 1.31+)"),
        ),
    }
}

fn external_ips(probe: &ExternalIpsProbe) -> Row {
    let row = |level, saw: String| Row::new(Scope::Cluster, id::EXTERNAL_IPS, level, saw);
    if let Some((code, reason, message)) = &probe.refused {
        let by = if message.contains("denied by admission control") {
            "the DenyServiceExternalIPs admission plugin"
        } else if message.contains("admission webhook") {
            "an admission webhook"
        } else {
            "the API server"
        };
        return row(
            Level::Fail,
            format!("a Service with spec.externalIPs is refused ({code} {reason}) by {by}"),
        )
        .fix("allow externalIPs on the gateway Service (remove DenyServiceExternalIPs from --enable-admission-plugins, or exempt it in the webhook), or set spec.ingressGateway.manageExternalIPs: false and publish the addresses another way");
    }
    match (&probe.warning, probe.accepted) {
        (Some(w), _) => row(
            Level::Warn,
            format!("a Service with spec.externalIPs is accepted, with a warning: {w}"),
        )
        .fix("externalIPs still work; spec.ingressGateway.publishAddressesTo: MeshNetworks publishes the gateway addresses without them"),
        (None, true) => row(
            Level::Ok,
            "a Service with spec.externalIPs is accepted (server-side dry run)".into(),
        ),
        (None, false) => row(
            Level::Warn,
            "the dry run of a Service with spec.externalIPs gave no answer".into(),
        )
        .fix("check that you may create Services in the namespace used (RBAC: create services)"),
    }
}

fn istio(istiod: Option<&Istiod>, sail: &[(String, String)], policy: &ValidPolicy) -> Vec<Row> {
    let row = |check, level, saw: String| Row::new(Scope::Cluster, check, level, saw);
    let upgrade = "upgrade Istio to 1.30 or later";
    let (what, version) = match (istiod, sail.first()) {
        (Some(d), _) => (
            format!("istiod {} image {}", d.deployment, d.image),
            version_of_image(&d.image),
        ),
        (None, Some((name, v))) => (format!("Sail Istio {name} version {v}"), Version::parse(v)),
        (None, None) => {
            return vec![
                row(
                    id::ISTIO_VERSION,
                    Level::Warn,
                    "no istiod Deployment and no Sail Istio found".into(),
                )
                .fix("install Istio 1.30 or later with the config dualmesh publishes"),
            ];
        }
    };
    let needed = policy.is_dual_stack();
    let mut out = vec![match version {
        None => row(
            id::ISTIO_VERSION,
            Level::Warn,
            format!("cannot tell the Istio version from {what}"),
        )
        .fix("make sure it is Istio 1.30 or later"),
        Some(v) if !needed => row(
            id::ISTIO_VERSION,
            Level::Ok,
            format!(
                "Istio {v} ({what}); an {} mesh needs no dual-stack support",
                policy.families_label()
            ),
        ),
        Some(v) if v < DUAL_STACK_ALPHA => row(
            id::ISTIO_VERSION,
            Level::Fail,
            format!("Istio {v} ({what}): dual-stack needs 1.24 or later"),
        )
        .fix(upgrade),
        Some(v) if v < DUAL_STACK_BETA => row(
            id::ISTIO_VERSION,
            Level::Warn,
            format!("Istio {v} ({what}): dual-stack is alpha before 1.28, gateway EDS is not filtered by family before 1.30"),
        )
        .fix(upgrade),
        Some(v) if v < FAMILY_FILTERED_EDS => row(
            id::ISTIO_VERSION,
            Level::Warn,
            format!("Istio {v} ({what}): dual-stack is beta, gateway EDS is not filtered by family before 1.30"),
        )
        .fix(upgrade),
        Some(v) => row(
            id::ISTIO_VERSION,
            Level::Ok,
            format!("Istio {v} ({what}): dual-stack beta, family-filtered gateway EDS"),
        ),
    }];
    if let Some(d) = istiod {
        let env = d.dual_stack_env.as_deref();
        let shown = env.map_or("unset".to_string(), |v| format!("{v:?}"));
        out.push(match (needed, env == Some("true")) {
            (true, true) => row(
                id::ISTIO_DUAL_STACK,
                Level::Ok,
                format!("istiod {} has ISTIO_DUAL_STACK=true", d.deployment),
            ),
            (true, false) => row(
                id::ISTIO_DUAL_STACK,
                Level::Fail,
                format!("istiod {} runs without ISTIO_DUAL_STACK=true ({shown})", d.deployment),
            )
            .fix("install with the config dualmesh publishes: it sets values.pilot.env.ISTIO_DUAL_STACK and meshConfig.defaultConfig.proxyMetadata.ISTIO_DUAL_STACK"),
            (false, _) => row(
                id::ISTIO_DUAL_STACK,
                Level::Ok,
                format!(
                    "an {} mesh needs no ISTIO_DUAL_STACK (istiod {}: {shown})",
                    policy.families_label(),
                    d.deployment
                ),
            ),
        });
    }
    out
}
