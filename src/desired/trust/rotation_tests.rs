use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::api::{RootRotationStatus, TrustStatus};
use crate::desired::trust::plan::{self, Decision, Issue, Observed, RotationView};
use crate::desired::trust::{
    CERT_CHAIN, Subject, generate_root, issue_intermediate, issue_intermediate_trusting,
};

fn t0() -> OffsetDateTime {
    // 2026-12-03T10:00:00Z
    OffsetDateTime::from_unix_timestamp(1_796_292_000).unwrap()
}

const GRACE: Duration = Duration::hours(24);

fn alpha() -> Subject<'static> {
    Subject {
        cluster_name: "cluster-alpha",
        istio_namespace: "istio-system",
    }
}

fn text(d: &SecretData, key: &str) -> String {
    String::from_utf8(d[key].expose().to_vec()).unwrap()
}

fn view(beta: Progress, since: Option<OffsetDateTime>) -> RotationView {
    RotationView {
        mesh: Mesh {
            peers: vec![("mesh/beta".to_string(), beta)],
            grace: GRACE,
        },
        since,
    }
}

fn decide(data: &SecretData, root: &Root, v: &RotationView, now: OffsetDateTime) -> Decision {
    plan::decide(&Observed::Ours(data), root, &alpha(), v, now)
}

#[test]
fn a_new_root_walks_both_roots_trusted_then_reissued_then_the_old_root_dropped() {
    let old = generate_root(t0());
    let new = generate_root(t0());
    let held = issue_intermediate(&old, &alpha(), 365, t0());
    let both = format!("{}{}", old.cert_pem, new.cert_pem);

    // 1. The bundle first: the old intermediate keeps signing.
    let Decision::Rotate(Step::Write {
        data: extended,
        phase,
    }) = decide(&held.data, &new, &view(Progress::NotStarted, None), t0())
    else {
        panic!("the rotation starts with the bundle");
    };
    assert_eq!(phase, Some(Phase::BothRootsTrusted));
    assert_eq!(text(&extended, ROOT_CERT), both);
    for key in [CA_CERT, super::super::CA_KEY, CERT_CHAIN] {
        assert_eq!(extended[key], held.data[key], "{key} is kept");
    }
    assert_eq!(
        assess(&extended, &new, t0()),
        Held::In(Phase::BothRootsTrusted)
    );

    // 2. Beta has not got there: wait for it, whatever the clock says.
    let later = t0() + GRACE * 3;
    assert_eq!(
        decide(
            &extended,
            &new,
            &view(Progress::NotStarted, Some(t0())),
            later
        ),
        Decision::Rotate(Step::Wait(Waiting {
            phase: Phase::BothRootsTrusted,
            since: t0(),
            waiting_for: vec!["mesh/beta".into()],
            until: t0() + GRACE,
        }))
    );
    // 3. Beta got there 10 s later: the grace runs from then.
    let beta_in = Progress::In(Phase::BothRootsTrusted, t0() + Duration::seconds(10));
    let until = t0() + Duration::seconds(10) + GRACE;
    assert_eq!(
        decide(
            &extended,
            &new,
            &view(beta_in, Some(t0())),
            until - Duration::seconds(1)
        ),
        Decision::Rotate(Step::Wait(Waiting {
            phase: Phase::BothRootsTrusted,
            since: t0(),
            waiting_for: vec![],
            until,
        }))
    );
    // 4. Then the intermediate is re-issued from the new root, both still trusted.
    assert_eq!(
        decide(&extended, &new, &view(beta_in, Some(t0())), until),
        Decision::Rotate(Step::Reissue {
            trusted: both.clone()
        })
    );
    let reissued = issue_intermediate_trusting(&new, &alpha(), 365, until, &both);
    assert_eq!(text(&reissued.data, ROOT_CERT), both);
    assert!(text(&reissued.data, CERT_CHAIN).ends_with(&new.cert_pem));
    assert_eq!(
        assess(&reissued.data, &new, until),
        Held::In(Phase::IntermediateReissued)
    );

    // 5. The old root stays until beta re-issued too and the grace passed.
    assert_eq!(
        decide(
            &reissued.data,
            &new,
            &view(beta_in, Some(until)),
            until + GRACE
        ),
        Decision::Rotate(Step::Wait(Waiting {
            phase: Phase::IntermediateReissued,
            since: until,
            waiting_for: vec!["mesh/beta".into()],
            until: until + GRACE,
        }))
    );
    // A peer already done does not hold anyone back.
    let Decision::Rotate(Step::Write {
        data: dropped,
        phase: None,
    }) = decide(
        &reissued.data,
        &new,
        &view(Progress::Done, Some(until)),
        until + GRACE,
    )
    else {
        panic!("the old root is dropped");
    };
    assert_eq!(text(&dropped, ROOT_CERT), new.cert_pem);
    assert_eq!(dropped[CA_CERT], reissued.data[CA_CERT]);

    // 6. Done: an ordinary intermediate of the mesh root.
    assert_eq!(assess(&dropped, &new, until + GRACE), Held::NotRotating);
    assert!(matches!(
        decide(
            &dropped,
            &new,
            &view(Progress::NotStarted, None),
            until + GRACE
        ),
        Decision::Keep { .. }
    ));
}

#[test]
fn a_phase_without_its_start_time_is_stamped_and_an_expired_intermediate_is_issued_anew() {
    let old = generate_root(t0());
    let new = generate_root(t0());
    let held = issue_intermediate(&old, &alpha(), 365, t0());
    let mut extended = held.data.clone();
    extended.insert(
        ROOT_CERT.into(),
        SecretValue::from(format!("{}{}", old.cert_pem, new.cert_pem).into_bytes()),
    );
    assert_eq!(
        decide(&extended, &new, &view(Progress::Done, None), t0()),
        Decision::Rotate(Step::Write {
            data: extended.clone(),
            phase: Some(Phase::BothRootsTrusted),
        })
    );
    // Past the old intermediate's end nothing is left to keep working.
    let expired = t0() + Duration::days(366);
    assert_eq!(assess(&held.data, &new, expired), Held::NotRotating);
    assert_eq!(
        decide(&held.data, &new, &view(Progress::Done, None), expired),
        Decision::Issue(Issue::RootChanged)
    );
}

fn status(serial: &str, rotation: Option<RootRotationStatus>) -> TrustStatus {
    let at = Time(k8s_openapi::jiff::Timestamp::from_second(1_796_292_000).unwrap());
    TrustStatus {
        root_secret: "mesh/dualmesh-root-ca-mesh1-gen1".into(),
        cacerts: "istio-system/cacerts".into(),
        intermediate_not_after: at.clone(),
        renew_after: at,
        root_serial: Some(serial.into()),
        rotation,
    }
}

#[test]
fn a_peers_progress_counts_only_for_the_same_root() {
    assert_eq!(Progress::of(None, "0A"), Progress::NotStarted);
    assert_eq!(
        Progress::of(Some(&status("0B", None)), "0A"),
        Progress::NotStarted
    );
    assert_eq!(
        Progress::of(Some(&status("0A", None)), "0A"),
        Progress::Done
    );
    let since = Time(k8s_openapi::jiff::Timestamp::from_second(1_796_292_060).unwrap());
    let rotating = status(
        "0A",
        Some(RootRotationStatus {
            phase: Phase::IntermediateReissued,
            since,
            waiting_for: vec![],
            next_step_after: None,
        }),
    );
    assert_eq!(
        Progress::of(Some(&rotating), "0A"),
        Progress::In(Phase::IntermediateReissued, t0() + Duration::minutes(1))
    );
    // The order the waits rely on.
    assert!(Progress::NotStarted < Progress::In(Phase::BothRootsTrusted, t0()));
    assert!(
        Progress::In(Phase::BothRootsTrusted, t0() + GRACE)
            < Progress::In(Phase::IntermediateReissued, t0())
    );
    assert!(Progress::In(Phase::IntermediateReissued, t0() + GRACE) < Progress::Done);
}

#[test]
fn the_phase_start_is_kept_as_an_annotation_in_whole_seconds() {
    let a = annotations(Some(Phase::BothRootsTrusted), t0());
    assert_eq!(
        a,
        BTreeMap::from([(
            SINCE_ANNOTATION.to_string(),
            "2026-12-03T10:00:00Z".to_string()
        )])
    );
    assert_eq!(since(Some(&a)), Some(t0()));
    assert!(annotations(None, t0()).is_empty());
    assert_eq!(since(None), None);
    let garbled = BTreeMap::from([(SINCE_ANNOTATION.to_string(), "yesterday".to_string())]);
    assert_eq!(since(Some(&garbled)), None);
}

#[test]
fn the_root_serial_is_printed_as_openssl_does() {
    let root = generate_root(t0());
    let serial = root.serial();
    assert!(!serial.is_empty());
    assert!(
        serial
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
    );
    assert_ne!(serial, generate_root(t0()).serial());
}
