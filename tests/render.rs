//! Rendering: examples/ in, tests/golden/ out, byte for byte, for every
//! install path (istiooperator/, helm/, sail/); real istioctl accepts every
//! IstioOperator golden (Istio's charts judge the Helm values in
//! tests/install_charts.rs); `dualmesh render` names file, object and field on
//! bad input and exits 2.
//!
//! Regenerate the goldens after an intended change with
//! `UPDATE_GOLDEN=1 cargo test --test render` and review the diff.

use std::path::{Path, PathBuf};
use std::process::Command;

use dualmesh::api::InstallWith;
use dualmesh::api::{DualStackPolicy, MeshCluster};
use dualmesh::desired::{install, istio_operator, validate};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let path = repo().join("examples").join(file);
    serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn examples(prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(prefix) && n.ends_with(".yaml"))
        .collect();
    v.sort();
    v
}

fn check_golden(name: &str, actual: &str) {
    let path = repo().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{} is missing: run UPDATE_GOLDEN=1 cargo test --test render",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs from the rendered output:\n--- golden\n{expected}\n--- rendered\n{actual}",
        path.display()
    );
}

/// Every example MeshCluster under every example policy, rendered the
/// given way: (golden name, rendered text).
fn goldens_for(install: InstallWith) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for mc_file in examples("meshcluster-") {
        let mut mc: MeshCluster = load(&mc_file);
        mc.spec.istio.install_with = install;
        let valid_mc = validate::validate_mesh_cluster(&mc.spec).unwrap();
        for policy_file in examples("policy-") {
            let policy: DualStackPolicy = load(&policy_file);
            let valid_policy = validate::validate_policy(&policy.spec).unwrap();
            let header = format!("{mc_file} under {policy_file}");
            let text = match install {
                InstallWith::IstioOperator => istio_operator::build(&valid_mc, &valid_policy).yaml,
                InstallWith::Helm => install::helm::build(&valid_mc, &valid_policy).stream(&header),
                InstallWith::Sail => install::sail::build(&valid_mc, &valid_policy).stream(&header),
            };
            let name = format!(
                "{}--{}",
                mc_file
                    .trim_start_matches("meshcluster-")
                    .trim_end_matches(".yaml"),
                policy_file.trim_start_matches("policy-")
            );
            out.push((name, text));
        }
    }
    out
}

const INSTALLS: [(InstallWith, &str); 3] = [
    (InstallWith::IstioOperator, "istiooperator"),
    (InstallWith::Helm, "helm"),
    (InstallWith::Sail, "sail"),
];

fn goldens() -> Vec<(String, String)> {
    INSTALLS
        .iter()
        .flat_map(|(install, dir)| {
            goldens_for(*install)
                .into_iter()
                .map(move |(name, text)| (format!("{dir}/{name}"), text))
        })
        .collect()
}

#[test]
fn every_example_renders_to_its_golden_file() {
    let all = goldens();
    assert_eq!(
        all.len(),
        27,
        "3 MeshClusters x 3 policies x 3 install paths"
    );
    for (name, yaml) in &all {
        check_golden(name, yaml);
    }
    // No golden is left over from an example or path that is gone.
    for (_, dir) in INSTALLS {
        for entry in std::fs::read_dir(repo().join("tests/golden").join(dir)).unwrap() {
            let name = format!("{dir}/{}", entry.unwrap().file_name().to_string_lossy());
            assert!(all.iter().any(|(n, _)| *n == name), "{name} is stale");
        }
    }
}

#[test]
fn rendering_is_reproducible() {
    assert_eq!(goldens(), goldens());
}

#[test]
fn dual_stack_switches_follow_the_policy() {
    let ds = std::fs::read_to_string(
        repo().join("tests/golden/istiooperator/alpha--dual-stack-ipv4-primary.yaml"),
    )
    .unwrap();
    let v6 =
        std::fs::read_to_string(repo().join("tests/golden/istiooperator/alpha--ipv6-only.yaml"))
            .unwrap();
    let io: serde_json::Value = serde_saphyr::from_str(&ds).unwrap();
    let spec = &io["spec"];
    assert_eq!(
        spec["meshConfig"]["defaultConfig"]["proxyMetadata"]["ISTIO_DUAL_STACK"],
        "true"
    );
    assert_eq!(spec["values"]["pilot"]["env"]["ISTIO_DUAL_STACK"], "true");
    let svc = &spec["components"]["ingressGateways"][0]["k8s"]["service"];
    assert_eq!(svc["ipFamilyPolicy"], "PreferDualStack");
    assert_eq!(svc["ipFamilies"], serde_json::json!(["IPv4", "IPv6"]));

    assert!(
        !v6.contains("ISTIO_DUAL_STACK"),
        "IPv6-only must not turn on dual-stack:\n{v6}"
    );
    let io: serde_json::Value = serde_saphyr::from_str(&v6).unwrap();
    let svc = &io["spec"]["components"]["ingressGateways"][0]["k8s"]["service"];
    assert_eq!(svc["ipFamilyPolicy"], "SingleStack");
    assert_eq!(svc["ipFamilies"], serde_json::json!(["IPv6"]));
}

fn tools_bin() -> PathBuf {
    testplane::tools_bin().unwrap()
}

fn istioctl(args: &[&str], file: &Path) -> (bool, String) {
    // istioctl writes under $HOME: a folder of this call's own.
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(tools_bin().join("istioctl"))
        .args(args)
        .arg(file)
        .env("HOME", home.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn real_istioctl_accepts_every_golden() {
    let dir = repo().join("tests/golden/istiooperator");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 6);
    for f in &files {
        for args in [&["manifest", "generate", "-f"][..], &["validate", "-f"][..]] {
            let (ok, text) = istioctl(args, f);
            assert!(
                ok,
                "istioctl {} {} failed:\n{text}",
                args.join(" "),
                f.display()
            );
            assert!(
                !text.contains("unknown field"),
                "istioctl {} {}:\n{text}",
                args.join(" "),
                f.display()
            );
        }
        // The generated gateway Service carries the policy's families.
        let (_, manifest) = istioctl(&["manifest", "generate", "-f"], f);
        let golden: serde_json::Value =
            serde_saphyr::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        let families = &golden["spec"]["values"]["gateways"]["istio-ingressgateway"]["ipFamilies"];
        let first = families[0].as_str().unwrap();
        assert!(
            manifest.contains(first),
            "{}: {first} missing in the manifest",
            f.display()
        );
    }
}

#[test]
fn a_broken_istio_operator_is_refused_by_istioctl() {
    // Proves the check above can fail: an unknown field is an error.
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        tmp.path(),
        "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nspec:\n  values:\n    global:\n      bogusField: 1\n",
    )
    .unwrap();
    let (ok, text) = istioctl(&["validate", "-f"], tmp.path());
    assert!(!ok && text.contains("unknown field"), "{text}");
}

fn dualmesh(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dualmesh"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn render_prints_one_istio_operator_per_mesh_cluster() {
    let out = dualmesh(&["render", "-f", repo().join("examples").to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    check_golden("render-examples.txt", &text);
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
    // alpha and beta (IstioOperator), then gamma's installWith Helm: base,
    // istiod, cni, gateway, ztunnel.
    assert_eq!(docs.len(), 7);
    assert_eq!(
        docs[1]["spec"]["values"]["global"]["multiCluster"]["clusterName"],
        "cluster-beta"
    );
    assert_eq!(
        docs[3]["global"]["multiCluster"]["clusterName"],
        "cluster-gamma"
    );
    assert_eq!(docs[6]["env"]["IPV6_ENABLED"], "true");
}

#[test]
fn render_install_with_renders_that_path_for_every_mesh_cluster() {
    let dir = repo().join("examples");
    let out = dualmesh(&[
        "render",
        "--install-with",
        "Sail",
        "-f",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "Istio", "IstioCNI", "Istio", "IstioCNI", "Istio", "IstioCNI", "ZTunnel"
        ]
    );
    assert_eq!(docs[4]["metadata"]["name"], "stable");
    assert_eq!(docs[4]["spec"]["version"], "v1.28.0");

    let out = dualmesh(&[
        "render",
        "--install-with",
        "Argo",
        "-f",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Argo"));
}

/// `dualmesh render -f dir` exits 2 and its error mentions every part.
fn refused_with(dir: &Path, parts: &[&str]) {
    let out = dualmesh(&["render", "-f", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for part in parts {
        assert!(err.contains(part), "`{part}` missing in: {err}");
    }
}

#[test]
fn render_names_file_object_and_field_on_bad_input_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("examples/policy-ipv6-only.yaml"),
        dir.path().join("policy.yaml"),
    )
    .unwrap();
    let mc = std::fs::read_to_string(repo().join("examples/meshcluster-alpha.yaml"))
        .unwrap()
        .replace("enterprise-agent.gloo-mesh:9977", "'2001:db8::1:9977'");
    std::fs::write(dir.path().join("alpha.yaml"), mc).unwrap();
    refused_with(
        dir.path(),
        &[
            "alpha.yaml",
            "MeshCluster alpha",
            "spec.istio.glooMesh.agentAddress",
            "brackets",
        ],
    );

    // A policy whose node mask is more than 16 bits past its Pod CIDR.
    let policy = std::fs::read_to_string(repo().join("examples/policy-ipv6-only.yaml"))
        .unwrap()
        .replace("nodeCIDRMaskSize: 120", "nodeCIDRMaskSize: 124");
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    std::fs::copy(
        repo().join("examples/meshcluster-alpha.yaml"),
        dir.path().join("alpha.yaml"),
    )
    .unwrap();
    refused_with(
        dir.path(),
        &[
            "policy.yaml",
            "DualStackPolicy ipv6-only",
            "spec.addressPlan.ipv6.nodeCIDRMaskSize",
            "at most 16",
        ],
    );
}

#[test]
fn render_refuses_a_pod_selector_that_is_not_labels_as_the_api_server_does() {
    // The same bad inputs tests/api.rs shows the API server refusing.
    for (fixture, what) in [
        (
            "48-mc-pod-selector-key-with-space.yaml",
            "\"tier x\" is not a label key",
        ),
        (
            "49-mc-pod-selector-value-with-comma.yaml",
            "the value \"x,tier!=y\" of \"app\" is not a label value",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            repo().join("examples/policy-ipv6-only.yaml"),
            dir.path().join("policy.yaml"),
        )
        .unwrap();
        std::fs::copy(
            repo().join("tests/fixtures/invalid").join(fixture),
            dir.path().join(fixture),
        )
        .unwrap();
        refused_with(
            dir.path(),
            &[
                fixture,
                "MeshCluster bad",
                "spec.ingressGateway.podSelector",
                what,
            ],
        );
    }
}

#[test]
fn spec_trust_turns_on_istios_multi_root_switch_on_every_install_path() {
    let policy: DualStackPolicy = load("policy-ipv6-only.yaml");
    let valid_policy = validate::validate_policy(&policy.spec).unwrap();
    let mut mc: MeshCluster = load("istio-native/meshcluster-alpha.yaml");
    assert!(mc.spec.trust.is_some(), "the example sets spec.trust");
    for trust in [true, false] {
        if !trust {
            mc.spec.trust = None;
        }
        let valid_mc = validate::validate_mesh_cluster(&mc.spec).unwrap();
        let io: serde_json::Value =
            serde_saphyr::from_str(&istio_operator::build(&valid_mc, &valid_policy).yaml).unwrap();
        let spec = &io["spec"];
        let want = if trust {
            serde_json::json!("true")
        } else {
            serde_json::Value::Null
        };
        assert_eq!(
            spec["values"]["pilot"]["env"]["ISTIO_MULTIROOT_MESH"], want,
            "trust {trust}: istiod env"
        );
        assert_eq!(
            spec["meshConfig"]["defaultConfig"]["proxyMetadata"]["ISTIO_MULTIROOT_MESH"], want,
            "trust {trust}: proxy metadata"
        );
        let helm = install::helm::build(&valid_mc, &valid_policy).stream("alpha");
        let sail = install::sail::build(&valid_mc, &valid_policy).stream("alpha");
        for (path, text) in [("helm", helm), ("sail", sail)] {
            assert_eq!(
                text.matches("ISTIO_MULTIROOT_MESH").count(),
                if trust { 2 } else { 0 },
                "trust {trust}: {path} carries it in pilot env and proxyMetadata:\n{text}"
            );
        }
    }
}
