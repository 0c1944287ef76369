//! The Helm charts (charts/dualmesh, charts/dualmesh-member) and the plain
//! manifests rendered from them (deploy/), no plane needed: `helm lint
//! --strict`, the values schema's refusals, drift against what `make
//! generate` renders, and the Deployment running the contract of `dualmesh
//! run`.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::charts::*;
use common::*;
use serde_json::{Value, json};

#[test]
fn the_charts_pass_helm_lint_strict_with_defaults_and_with_every_toggle_on() {
    let home = tempfile::tempdir().unwrap();
    for (chart_name, values) in [
        ("dualmesh", None),
        ("dualmesh", Some("every-toggle.yaml")),
        ("dualmesh-member", None),
        ("dualmesh-member", Some("member-every-toggle.yaml")),
    ] {
        let mut helm = helm_in(home.path());
        helm.args(["lint", "--strict"]).arg(chart(chart_name));
        if let Some(v) = values {
            helm.arg("-f").arg(fixture(v));
        }
        let out = run(&mut helm, None);
        assert!(
            out.contains("1 chart(s) linted, 0 chart(s) failed") && !out.contains("[WARNING]"),
            "{chart_name} {values:?}:\n{out}"
        );
    }
}

#[test]
fn the_values_schema_refuses_wrong_values_and_the_templates_refuse_unsafe_combinations() {
    let home = tempfile::tempdir().unwrap();
    for (set, expect) in [
        ("logFormat=xml", "value must be one of 'json', 'text'"),
        ("replicaCount=-1", "minimum"),
        ("rbac.secretNamespaces={Bad_NS}", "secretNamespaces"),
        (
            "unknownKey=1",
            "additional properties 'unknownKey' not allowed",
        ),
        ("image.digest=latest", "digest"),
        (
            "leaderElection.enabled=false",
            "replicaCount > 1 needs leaderElection.enabled",
        ),
        (
            "rbac.secretNamespaces={dualmesh-system}",
            "already grants Secret reads",
        ),
        (
            "metrics.service.enabled=false,metrics.serviceMonitor.enabled=true",
            "needs metrics.service.enabled",
        ),
    ] {
        let mut helm = helm_in(home.path());
        helm.args(["template", "dualmesh"])
            .arg(chart("dualmesh"))
            .args(["--namespace", "dualmesh-system", "--set", set]);
        let out = output(&mut helm, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(expect),
            "--set {set}: expected a refusal containing {expect:?}, got {}:\n{stderr}",
            out.status
        );
    }
    // One replica may run without leader election.
    let mut helm = helm_in(home.path());
    helm.args(["template", "dualmesh"])
        .arg(chart("dualmesh"))
        .args(["--set", "replicaCount=1,leaderElection.enabled=false"]);
    let docs = documents(&run(&mut helm, None));
    let args =
        &find(&docs, "Deployment", "dualmesh")["spec"]["template"]["spec"]["containers"][0]["args"];
    assert_eq!(args, &json!(["run"]));
}

/// What `make generate` runs after `dualmesh crd --dir crds`: the Makefile's
/// recipe is read here, so that the test and the target cannot part ways.
#[test]
fn deploy_and_the_chart_crds_are_what_make_generate_renders() {
    let makefile = read("Makefile");
    let recipe: Vec<&str> = makefile
        .lines()
        .skip_while(|l| !l.starts_with("generate:"))
        .skip(1)
        .take_while(|l| l.starts_with('\t'))
        .map(str::trim)
        .collect();
    assert_eq!(
        recipe,
        vec![
            "cargo run -q -- crd --dir crds",
            "rm -f charts/dualmesh/crds/*.yaml",
            "cp crds/*.yaml charts/dualmesh/crds/",
            "charts/render-manifests.sh $(TOOLS_BIN)/helm deploy",
        ],
        "the generate target changed: update this test with it"
    );

    // The chart's CRDs are exact copies of crds/.
    let list = |dir: &str| -> BTreeMap<String, String> {
        std::fs::read_dir(repo().join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .map(|f| (f.clone(), read(format!("{dir}/{f}"))))
            .collect()
    };
    let crds = list("crds");
    assert_eq!(crds.len(), 2);
    let chart_crds = list("charts/dualmesh/crds");
    assert_eq!(
        crds.keys().collect::<Vec<_>>(),
        chart_crds.keys().collect::<Vec<_>>()
    );
    for (file, text) in &crds {
        assert!(
            chart_crds[file] == *text,
            "charts/dualmesh/crds/{file} differs from crds/{file}: run `make generate`"
        );
    }

    // deploy/ as the script renders it now.
    let out = tempfile::tempdir().unwrap();
    let helm = testplane::tools_bin().unwrap().join("helm");
    let home = tempfile::tempdir().unwrap();
    run(
        Command::new("bash")
            .arg(repo().join("charts/render-manifests.sh"))
            .arg(&helm)
            .arg(out.path())
            .env("HELM_CACHE_HOME", home.path().join("cache"))
            .env("HELM_CONFIG_HOME", home.path().join("config"))
            .env("HELM_DATA_HOME", home.path().join("data")),
        None,
    );
    for file in ["dualmesh.yaml", "member/dualmesh-member.yaml"] {
        let want = std::fs::read_to_string(out.path().join(file)).unwrap();
        let have = read(format!("deploy/{file}"));
        if want != have {
            let first = want
                .lines()
                .zip(have.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(want.lines().count().min(have.lines().count()));
            panic!(
                "deploy/{file} differs from the charts at line {}: run `make generate`",
                first + 1
            );
        }
    }

    // What deploy/dualmesh.yaml holds: the namespace first, then the CRDs.
    let docs = documents(&read("deploy/dualmesh.yaml"));
    let k = kinds(&docs);
    assert_eq!(
        &k[..3],
        &[
            "Namespace/dualmesh-system",
            "CustomResourceDefinition/dualstackpolicies.dualmesh.io",
            "CustomResourceDefinition/meshclusters.dualmesh.io",
        ]
    );
    assert_eq!(
        docs[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    for want in [
        "ServiceAccount/dualmesh",
        "ClusterRole/dualmesh",
        "ClusterRoleBinding/dualmesh",
        "Role/dualmesh",
        "RoleBinding/dualmesh",
        "Role/dualmesh-leader-election",
        "RoleBinding/dualmesh-leader-election",
        "Deployment/dualmesh",
        "Service/dualmesh-metrics",
        "PodDisruptionBudget/dualmesh",
    ] {
        assert!(k.contains(&want.to_string()), "{want} missing in {k:?}");
    }
    assert_eq!(k.len(), 13, "{k:?}");
}

#[test]
fn the_deployment_runs_the_contract_of_dualmesh_run() {
    let docs = default_render();
    let deploy = find(&docs, "Deployment", "dualmesh");
    assert_eq!(deploy["spec"]["replicas"], 2);
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "dualmesh");
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    assert_eq!(
        pod["securityContext"],
        json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
               "seccompProfile": {"type": "RuntimeDefault"}})
    );
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "ghcr.io/dualmesh/dualmesh:0.1.0");
    assert_eq!(
        c["args"],
        json!([
            "run",
            "--leader-elect",
            "--lease-name=dualmesh",
            "--lease-duration-seconds=15"
        ])
    );
    assert_eq!(
        c["securityContext"],
        json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
               "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}})
    );
    let env: BTreeMap<String, Value> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let v = e
                .get("value")
                .cloned()
                .unwrap_or_else(|| e["valueFrom"]["fieldRef"]["fieldPath"].clone());
            (e["name"].as_str().unwrap().to_string(), v)
        })
        .collect();
    assert_eq!(
        env,
        BTreeMap::from([
            ("POD_NAME".into(), json!("metadata.name")),
            ("POD_NAMESPACE".into(), json!("metadata.namespace")),
            ("DUALMESH_NAMESPACE".into(), json!("metadata.namespace")),
            (
                "DUALMESH_LEASE_NAMESPACE".into(),
                json!("metadata.namespace")
            ),
            ("DUALMESH_LISTEN".into(), json!("[::]:8080")),
            ("DUALMESH_LOG_FORMAT".into(), json!("json")),
            ("DUALMESH_LOG".into(), json!("info")),
        ])
    );
    assert_eq!(
        c["ports"],
        json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "http"})
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "http"})
    );
    let anti =
        &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(
        anti["podAffinityTerm"]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(
        anti["podAffinityTerm"]["labelSelector"]["matchLabels"],
        deploy["spec"]["selector"]["matchLabels"]
    );

    // watchNamespace: the MeshCluster Role moves there, the Lease stays home.
    let home = tempfile::tempdir().unwrap();
    let docs = documents(&template(
        helm_in(home.path()),
        "dualmesh",
        "dualmesh",
        "ops",
        None,
        &["--set", "watchNamespace=meshes"],
    ));
    let role = find(&docs, "Role", "dualmesh");
    assert_eq!(role["metadata"]["namespace"], "meshes");
    let lease = find(&docs, "Role", "dualmesh-leader-election");
    assert_eq!(lease["metadata"]["namespace"], "ops");
    let env =
        &find(&docs, "Deployment", "dualmesh")["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .contains(&json!({"name": "DUALMESH_NAMESPACE", "value": "meshes"})),
        "{env}"
    );
}
