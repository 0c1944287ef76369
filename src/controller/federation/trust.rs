//! Istio-native trust, the I/O half (certificates and decisions in
//! [`crate::desired::trust`]): fetch the mesh root from the management
//! cluster (the named Secret, or the generated one, created once), fetch
//! the target's `cacerts`, and write a new intermediate when the plan says
//! so.
//!
//! The root's private key is read from, and written to, the management
//! cluster only; `cacerts` carries the intermediate's key and the root's
//! certificate. Every Secret read becomes [`SecretData`] at once (values
//! that `Debug` shows as lengths).

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use time::OffsetDateTime;

use super::secret_sync::read_secret;
use crate::api::RootRotationStatus;
use crate::api::{MeshCluster, TrustSpec, TrustStatus};
use crate::controller::ssa;
use crate::desired::conditions::Found;
use crate::desired::istio_operator::MANAGED_BY;
use crate::desired::keys::object_key;
use crate::desired::secret_sync::SecretData;
use crate::desired::trust::plan::{self, Decision, Observed, RotationView};
use crate::desired::trust::rotation::{self, Mesh, Phase, Progress, Step};
use crate::desired::trust::{self, CACERTS, Root, Subject};

/// What the trust job found.
pub struct TrustOutcome {
    pub condition: Found,
    /// The status part; None: nothing distributed this pass (the old one stays).
    pub status: Option<TrustStatus>,
    pub writes: u32,
}

impl TrustOutcome {
    fn refused(condition: Found) -> Self {
        TrustOutcome {
            condition,
            status: None,
            writes: 0,
        }
    }
}

fn time(t: OffsetDateTime) -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::from_second(t.unix_timestamp())
            .expect("a certificate date is a valid timestamp"),
    )
}

/// The mesh root for `mc`, from `management`: `Ok(Err(found))` when it
/// cannot be used (the condition says why).
async fn root(
    management: &Client,
    mc: &MeshCluster,
    spec: &TrustSpec,
    now: OffsetDateTime,
) -> Result<Result<(Root, String), Found>, kube::Error> {
    let ns = mc.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(management.clone(), &ns);
    let name = plan::root_secret_name(&mc.spec.mesh_id, spec);
    let named = spec.root_ca_secret_ref.is_some();
    let secret_ref = object_key(&ns, &name);
    let vet = |data: &SecretData| {
        trust::read_root(data, now)
            .map(|r| (r, secret_ref.clone()))
            .map_err(|p| plan::root_invalid(&secret_ref, &p))
    };
    if let Some((data, _)) = read_secret(&api, &name, None).await? {
        return Ok(vet(&data));
    }
    if named {
        return Ok(Err(plan::root_missing(&secret_ref)));
    }
    // None named and none generated yet: generate one, by a create (two
    // MeshClusters of the mesh racing keep one root: the second create is
    // answered 409 and reads the first's).
    let root = trust::generate_root(now);
    let data = root.secret_data();
    let labels =
        std::collections::BTreeMap::from([(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string())]);
    let body = plan::secret_body(&ns, &name, &labels, &data, None);
    match ssa::create_serialized::<Secret, _>(management, &ns, &body).await {
        Ok(_) => {
            tracing::info!(secret = %secret_ref, mesh = %mc.spec.mesh_id, "generated the mesh root CA");
            Ok(Ok((root, secret_ref)))
        }
        Err(e) if ssa::is_conflict(&e) => match read_secret(&api, &name, None).await? {
            Some((data, _)) => Ok(vet(&data)),
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Makes `target`'s `cacerts` hold an intermediate of the mesh root;
/// `peers` are the other MeshClusters of the mesh with `spec.trust`
/// (key, status) for a rotation's steps.
pub async fn distribute(
    management: &Client,
    target: &Client,
    mc: &MeshCluster,
    spec: &TrustSpec,
    peers: &[(String, Option<TrustStatus>)],
    now: OffsetDateTime,
) -> Result<TrustOutcome, kube::Error> {
    let (root, root_ref) = match root(management, mc, spec, now).await? {
        Ok(r) => r,
        Err(found) => return Ok(TrustOutcome::refused(found)),
    };
    let name = mc.name_any();
    let ns = &mc.spec.istio.namespace;
    let subject = Subject {
        cluster_name: &mc.spec.cluster_name,
        istio_namespace: ns,
    };
    let mut writes = 0;
    let namespaces: Api<Namespace> = Api::all(target.clone());
    if namespaces.get_opt(ns).await?.is_none() {
        let body = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": {MANAGED_BY.0: MANAGED_BY.1}},
        });
        match ssa::create(&namespaces, &body).await {
            Ok(_) => writes += 1,
            Err(e) if ssa::is_conflict(&e) => {}
            Err(e) => return Err(e),
        }
    }
    let api: Api<Secret> = Api::namespaced(target.clone(), ns);
    let held = read_secret(&api, CACERTS, None).await?;
    let observed = match &held {
        None => Observed::Absent,
        Some((data, meta))
            if plan::is_ours(meta.labels.as_ref().unwrap_or(&Default::default()), &name) =>
        {
            Observed::Ours(data)
        }
        Some(_) => Observed::Foreign,
    };
    let serial = root.serial();
    let view = RotationView {
        mesh: Mesh {
            peers: peers
                .iter()
                .map(|(key, status)| (key.clone(), Progress::of(status.as_ref(), &serial)))
                .collect(),
            grace: time::Duration::seconds(spec.rotation_grace_period_seconds.max(0)),
        },
        since: held
            .as_ref()
            .and_then(|(_, meta)| rotation::since(meta.annotations.as_ref())),
    };
    let labels = plan::labels(&name);
    // What to write (data, the phase it enters), or what is held.
    let (write, rotation_status) = match plan::decide(&observed, &root, &subject, &view, now) {
        Decision::Foreign => return Ok(TrustOutcome::refused(plan::foreign(ns, &name))),
        Decision::Keep { .. } => (None, None),
        Decision::Issue(why) => {
            let cacerts =
                trust::issue_intermediate(&root, &subject, spec.intermediate_validity_days, now);
            tracing::info!(meshcluster = %name, root = %root_ref, why = ?why, "issuing an intermediate CA");
            (Some((cacerts.data, None)), None)
        }
        Decision::Rotate(Step::Wait(waiting)) => (None, Some(waiting)),
        Decision::Rotate(Step::Write { data, phase }) => {
            tracing::info!(meshcluster = %name, root = %root_ref, phase = ?phase, "root rotation: next step");
            (Some((data, phase)), None)
        }
        Decision::Rotate(Step::Reissue { trusted }) => {
            let cacerts = trust::issue_intermediate_trusting(
                &root,
                &subject,
                spec.intermediate_validity_days,
                now,
                &trusted,
            );
            tracing::info!(meshcluster = %name, root = %root_ref, "root rotation: intermediate re-issued from the new root");
            (
                Some((cacerts.data, Some(Phase::IntermediateReissued))),
                None,
            )
        }
    };
    let (data, waiting) = match write {
        Some((data, phase)) => {
            let annotations = rotation::annotations(phase, now);
            match &held {
                None => {
                    let body = plan::secret_body_annotated(
                        ns,
                        CACERTS,
                        &labels,
                        &annotations,
                        &data,
                        None,
                    );
                    ssa::create_serialized::<Secret, _>(target, ns, &body).await?;
                }
                Some((_, meta)) => {
                    let rv = ssa::adopt(&api, CACERTS, meta)
                        .await?
                        .or_else(|| meta.resource_version.clone());
                    let body = plan::secret_body_annotated(
                        ns,
                        CACERTS,
                        &labels,
                        &annotations,
                        &data,
                        rv.as_deref(),
                    );
                    ssa::apply(&api, CACERTS, &body).await?;
                }
            }
            writes += 1;
            tracing::info!(
                meshcluster = %name,
                cacerts = %object_key(ns, CACERTS),
                root = %root_ref,
                trusted_roots = rotation::trusted_roots(&data),
                "wrote cacerts"
            );
            // Where this cluster now is (the peers are looked at again next pass).
            let waiting = phase.map(|phase| rotation::Waiting {
                phase,
                since: now,
                waiting_for: Vec::new(),
                until: now + view.mesh.grace,
            });
            (data, waiting)
        }
        None => {
            let data = held.map(|(data, _)| data).unwrap_or_default();
            (data, rotation_status)
        }
    };
    let Some((not_before, not_after)) = rotation::validity(&data) else {
        // Keep and Wait parsed the held certificate, a write holds a
        // parsed or new one: not reached, but never a panic.
        return Ok(TrustOutcome::refused(plan::unreadable(ns)));
    };
    let condition = match &waiting {
        Some(w) => plan::rotating(ns, &root_ref, w),
        None => plan::distributed(ns, &root_ref, not_before, not_after),
    };
    Ok(TrustOutcome {
        condition,
        status: Some(TrustStatus {
            root_secret: root_ref,
            cacerts: object_key(ns, CACERTS),
            intermediate_not_after: time(not_after),
            renew_after: time(plan::renew_at(not_before, not_after)),
            root_serial: Some(serial),
            rotation: waiting.map(|w| RootRotationStatus {
                phase: w.phase,
                since: time(w.since),
                waiting_for: w.waiting_for,
                next_step_after: Some(time(w.until)),
            }),
        }),
        writes,
    })
}

/// `now`, for the certificate plan.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}
