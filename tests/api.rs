//! The API at the door: the CRDs in crds/ are what `dualmesh crd` prints, a
//! real kube-apiserver accepts every example and refuses every bad input in
//! tests/fixtures/invalid with a message naming the field, and objects
//! already stored are untouched by the refused writes.

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::{repo, wait_for};
use dualmesh::api::{DualStackPolicy, MeshCluster};
use kube::Api;
use testplane::ControlPlane;

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn crds_in_the_repository_are_what_dualmesh_crd_prints() {
    for (file, yaml) in dualmesh::api::crd_files() {
        let path = repo().join("crds").join(&file);
        let stored = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            stored == yaml,
            "{} is out of date: run `make generate` and commit the result",
            path.display()
        );
    }
}

/// A fixture's header: `# field: spec.x` and `# expect: message fragment`
/// (alternatives separated by ` | `: an update may be refused with other
/// words than a create, e.g. an emptied list is "Required" on update).
struct Fixture {
    path: PathBuf,
    field: String,
    expect: String,
    kind: &'static str,
}

fn fixtures() -> Vec<Fixture> {
    let dir = repo().join("tests/fixtures/invalid");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let body = std::fs::read_to_string(&path).unwrap();
            let header = |key: &str| {
                body.lines()
                    .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
                    .unwrap_or_else(|| panic!("{} has no `# {key}:` line", path.display()))
                    .to_string()
            };
            let kind = if body.contains("kind: MeshCluster") {
                "MeshCluster"
            } else {
                "DualStackPolicy"
            };
            Fixture {
                field: header("field"),
                expect: header("expect"),
                kind,
                path,
            }
        })
        .collect()
}

async fn install_crds_and_examples(plane: &ControlPlane) {
    let out = plane
        .kubectl()
        .args(["apply", "--server-side", "-f"])
        .arg(repo().join("crds"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = plane
        .kubectl()
        .args([
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "--all",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = plane
        .kubectl()
        .args(["create", "namespace", "dualmesh-system"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test]
async fn the_api_server_accepts_every_example_and_refuses_every_bad_input() {
    let plane = ControlPlane::start_named("api").await.unwrap();
    install_crds_and_examples(&plane).await;

    // Every example is accepted.
    let mut examples: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 5, "{examples:?}");
    for example in &examples {
        let out = plane
            .kubectl()
            .args(["apply", "--server-side", "--field-manager=example", "-f"])
            .arg(example)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} refused: {}",
            example.display(),
            text(&out)
        );
    }

    let client = plane.client().await.unwrap();
    let policies: Api<DualStackPolicy> = Api::all(client.clone());
    let clusters: Api<MeshCluster> = Api::namespaced(client.clone(), "dualmesh-system");
    let snapshot = || async {
        let p = policies.list(&Default::default()).await.unwrap();
        let c = clusters.list(&Default::default()).await.unwrap();
        let mut v: Vec<(String, Option<String>)> = p
            .items
            .iter()
            .map(|o| {
                (
                    format!("dsp/{}", o.metadata.name.clone().unwrap()),
                    o.metadata.resource_version.clone(),
                )
            })
            .chain(c.items.iter().map(|o| {
                (
                    format!("mc/{}", o.metadata.name.clone().unwrap()),
                    o.metadata.resource_version.clone(),
                )
            }))
            .collect();
        v.sort();
        v
    };
    let before = snapshot().await;
    assert_eq!(before.len(), examples.len());

    let fixtures = fixtures();
    assert!(fixtures.len() >= 30, "only {} bad inputs", fixtures.len());
    let mut failures = Vec::new();
    for f in &fixtures {
        // As a new object, and as an update of an object already stored.
        let existing = if f.kind == "MeshCluster" {
            "alpha"
        } else {
            "ipv6-only"
        };
        let body = std::fs::read_to_string(&f.path).unwrap();
        let update = body.replacen("name: bad", &format!("name: {existing}"), 1);
        for (how, yaml) in [("create", body.clone()), ("update", update)] {
            let tmp = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(tmp.path(), &yaml).unwrap();
            let out = plane
                .kubectl()
                .args([
                    "apply",
                    "--server-side",
                    "--field-manager=example",
                    "--force-conflicts",
                    "-f",
                ])
                .arg(tmp.path())
                .output()
                .unwrap();
            let msg = text(&out);
            let name = f.path.file_name().unwrap().to_string_lossy();
            if out.status.success() {
                failures.push(format!("{name} ({how}): accepted"));
            } else if !msg.contains(&f.field) || !f.expect.split(" | ").any(|e| msg.contains(e)) {
                failures.push(format!(
                    "{name} ({how}): message does not name `{}` with `{}`:\n    {}",
                    f.field,
                    f.expect,
                    msg.trim()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad inputs misjudged:\n{}",
        failures.len(),
        fixtures.len(),
        failures.join("\n")
    );

    // Nothing stored changed, and no `bad` object exists.
    assert_eq!(snapshot().await, before);
    assert!(policies.get_opt("bad").await.unwrap().is_none());
    assert!(clusters.get_opt("bad").await.unwrap().is_none());
}

/// `kubectl explain what`. The apiserver publishes a new CRD's OpenAPI a
/// moment after it is Established: waits until explain finds it.
async fn explain(plane: &ControlPlane, what: &str) -> String {
    wait_for(
        &format!("kubectl explain {what}"),
        std::time::Duration::from_secs(20),
        || async {
            let out = plane.kubectl().args(["explain", what]).output().unwrap();
            if out.status.success() {
                Ok(text(&out))
            } else {
                Err(text(&out))
            }
        },
    )
    .await
}

#[tokio::test]
async fn kubectl_explain_shows_the_field_docs() {
    let plane = ControlPlane::start_named("explain").await.unwrap();
    install_crds_and_examples(&plane).await;
    let spec = explain(&plane, "meshcluster.spec").await;
    for fragment in [
        "clusterName",
        "The Istio cluster name",
        "kubeconfigSecretRef",
        "For a member cluster: the Secret",
        "dualStackPolicyRef",
    ] {
        assert!(spec.contains(fragment), "`{fragment}` missing in:\n{spec}");
    }
    let policy = explain(&plane, "dualstackpolicy.spec.ipFamilies").await;
    assert!(policy.contains("primary first"), "{policy}");
}

#[tokio::test]
async fn the_old_spelling_of_manage_external_ips_keeps_its_value_for_one_release() {
    // An object written as the docs of 0.1 let users write it (the CRD then
    // served `manageExternalIps`) must not turn into `true` after the upgrade.
    let plane = ControlPlane::start_named("old-spelling").await.unwrap();
    install_crds_and_examples(&plane).await;
    let alpha = std::fs::read_to_string(repo().join("examples/meshcluster-alpha.yaml")).unwrap();
    let mut old: serde_json::Value = serde_saphyr::from_str(&alpha).unwrap();
    old["spec"]["ingressGateway"] = serde_json::json!({"manageExternalIps": false});
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), serde_json::to_string(&old).unwrap()).unwrap();
    let out = plane
        .kubectl()
        .args(["apply", "--server-side", "--field-manager=example", "-f"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let client = plane.client().await.unwrap();
    let clusters: Api<MeshCluster> = Api::namespaced(client, "dualmesh-system");
    let stored = clusters.get("alpha").await.unwrap();
    assert!(!stored.spec.ingress_gateway.manage_external_ips);
    // Neither spelling: the default, true, from dualmesh (not the schema).
    old["spec"]["ingressGateway"] = serde_json::json!({});
    std::fs::write(tmp.path(), serde_json::to_string(&old).unwrap()).unwrap();
    let out = plane
        .kubectl()
        .args(["apply", "--server-side", "--field-manager=example", "-f"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        clusters
            .get("alpha")
            .await
            .unwrap()
            .spec
            .ingress_gateway
            .manage_external_ips
    );
}
