//! The charts' RBAC running the real operator across two planes with
//! nothing more than it grants: every request it makes is in the audit log,
//! none is refused, and every rule granted is used (see
//! `common::rbac::assert_least_privilege`).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::charts::*;
use common::rbac::*;
use common::trust::*;
use common::*;
use dualmesh::api::{DualStackPolicy, MeshCluster};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::DeleteParams;
use kube::{Api, Client};
use serde_json::{Value, json};
use testplane::operator::Operator;
use testplane::{ControlPlane, PlaneOptions};

/// The Pod name the operator runs under in the least-privilege test.
const POD_NAME: &str = "dualmesh-5c9d8f7b6-x2x4q";

/// The operator's arguments (after `run`) and environment as the chart's
/// Deployment in `manifest` sets them, field references resolved as the
/// kubelet would for Pod [`POD_NAME`] in `dualmesh-system`; the one change is
/// a free loopback port instead of 8080 (tests run side by side).
fn deployment_contract(manifest: &str, pod_name: &str) -> (Vec<String>, Vec<(String, String)>) {
    let docs = documents(manifest);
    let container =
        &find(&docs, "Deployment", "dualmesh")["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(args.first().map(String::as_str), Some("run"));
    let env = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            let value = match (
                e["value"].as_str(),
                e["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
            ) {
                _ if name == "DUALMESH_LISTEN" => "[::1]:0".to_string(),
                (Some(v), _) => v.to_string(),
                (None, Some("metadata.name")) => pod_name.to_string(),
                (None, Some("metadata.namespace")) => NS.to_string(),
                other => panic!("{name}: no value for {other:?}"),
            };
            (name, value)
        })
        .collect();
    (args[1..].to_vec(), env)
}

/// The address of /healthz, /readyz and /metrics, from the operator's JSON log.
async fn json_log_addr(operator: &Operator) -> std::net::SocketAddr {
    wait_for("the HTTP address in the JSON log", WAIT, || async {
        operator
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["fields"]["message"] == "serving /healthz /readyz /metrics")
            .and_then(|v| v["fields"]["addr"].as_str()?.parse().ok())
            .ok_or_else(|| operator.log_tail(5))
    })
    .await
}

/// On a panic, prints the end of the operator's log (the file at this path).
struct ReportLog(PathBuf);

impl Drop for ReportLog {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            eprintln!("--- operator log tail ---\n{tail}");
        }
    }
}

/// On a panic (a wait timing out, say), prints what `user` was refused, so
/// that a missing rule is named rather than guessed from a timeout.
struct ReportRefusals<'a>(&'a ControlPlane, &'a str);

impl Drop for ReportRefusals<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let refused: Vec<Request> = requests_by(self.0, self.1)
                .into_iter()
                .filter(|r| r.code == Some(403))
                .collect();
            eprintln!(
                "--- requests of {} refused on {}: {refused:#?}",
                self.1,
                self.0.name()
            );
        }
    }
}

async fn get_json<K>(api: &Api<K>, name: &str) -> Option<Value>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.get_opt(name)
        .await
        .expect("get")
        .map(|o| serde_json::to_value(o).unwrap())
}

async fn wait_gone<K>(api: &Api<K>, what: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let (api, name) = (api.clone(), what.to_string());
    wait_for(&format!("{what} deleted"), WAIT, || {
        let (api, name) = (api.clone(), name.clone());
        async move {
            match get_json(&api, &name).await {
                None => Ok(()),
                Some(_) => Err("still there".into()),
            }
        }
    })
    .await;
}

/// Waits for the ConfigMap dualmesh publishes for `mc` (so that dualmesh,
/// not the test, created the Istio namespace).
async fn wait_config_map(client: &Client, mc: &str) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), GW_NS);
    let name = format!("{mc}-istiooperator");
    wait_for(&format!("ConfigMap {name}"), WAIT, || async {
        get_json(&api, &name)
            .await
            .map(|_| ())
            .ok_or("absent".into())
    })
    .await;
}

#[tokio::test]
async fn the_charts_rbac_runs_the_operator_across_two_clusters_and_grants_nothing_unused() {
    let audit = tempfile::tempdir().unwrap();
    let policy = audit.path().join("audit-policy.yaml");
    std::fs::write(&policy, AUDIT_EVERYTHING_OF_DUALMESH).unwrap();
    // A later --audit-policy-file wins over the harness's own.
    let with_audit = |name: &str| {
        PlaneOptions::named(name).arg(&format!("--audit-policy-file={}", policy.display()))
    };
    let (alpha, beta) = tokio::join!(
        ControlPlane::start(with_audit("rbac-alpha")),
        ControlPlane::start(with_audit("rbac-beta"))
    );
    let (alpha, beta) = (alpha.expect("alpha"), beta.expect("beta"));
    let a = alpha.client().await.unwrap();
    let b = beta.client().await.unwrap();
    let _report_alpha = ReportRefusals(&alpha, OPERATOR_SA);
    let _report_beta = ReportRefusals(&beta, MEMBER_SA);

    // Management cluster: the chart (its CRDs, RBAC and a Deployment no
    // kubelet runs), with Secret reads in gloo-mesh for the relay sources.
    create_namespace(&a, "gloo-mesh").await;
    let install = |plane: &ControlPlane, release: &str, chart_name: &str, set: &[&str]| {
        let mut helm = plane.helm();
        // An upgrade installs when the release is absent.
        helm.args(["upgrade", "--install", release])
            .arg(chart(chart_name))
            .args(["--namespace", "dualmesh-system", "--create-namespace"]);
        for s in set {
            helm.args(["--set", s]);
        }
        run(&mut helm, None);
        run(
            plane
                .helm()
                .args(["get", "manifest", release, "-n", "dualmesh-system"]),
            None,
        )
    };
    let operator_manifest = install(
        &alpha,
        "dualmesh",
        "dualmesh",
        &["rbac.secretNamespaces={gloo-mesh}"],
    );
    install(&beta, "dualmesh-member", "dualmesh-member", &[]);
    for crd in crd_names() {
        wait_for(&format!("CRD {crd}"), WAIT, || async {
            let out = output(
                alpha.kubectl().args([
                    "get",
                    "crd",
                    crd,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
                ]),
                None,
            );
            match String::from_utf8_lossy(&out.stdout).as_ref() {
                "True" => Ok(()),
                other => Err(other.to_string()),
            }
        })
        .await;
    }

    put_secret(
        &a,
        "gloo-mesh",
        "relay-root-tls-secret",
        &[("ca.crt", "root-ca"), ("tls.key", "server-key")],
    )
    .await;
    put_secret(
        &a,
        "gloo-mesh",
        "relay-identity-token-secret",
        &[("token", "relay-token")],
    )
    .await;
    // beta's kubeconfig: the member chart's ServiceAccount.
    let member_kubeconfig = beta
        .user_kubeconfig(MEMBER_SA, &SA_GROUPS, "member.kubeconfig")
        .unwrap();
    put_secret(
        &a,
        NS,
        "beta-kubeconfig",
        &[(
            "kubeconfig",
            &std::fs::read_to_string(&member_kubeconfig).unwrap(),
        )],
    )
    .await;

    // The operator as the chart's ServiceAccount (RBAC decides everything),
    // with the Deployment's arguments and environment.
    let operator_kubeconfig = alpha
        .user_kubeconfig(OPERATOR_SA, &SA_GROUPS, "sa.kubeconfig")
        .unwrap();
    let (args, env) = deployment_contract(&operator_manifest, POD_NAME);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut operator = Operator::start_with_env(
        Path::new(env!("CARGO_BIN_EXE_dualmesh")),
        &operator_kubeconfig,
        &args,
        &env,
        &alpha.dir().join("operator.log"),
    )
    .expect("start dualmesh");
    let _report_log = ReportLog(alpha.dir().join("operator.log"));
    // It leads, under the Pod's name, and says so on /readyz.
    let addr = json_log_addr(&operator).await;
    wait_for("/readyz leading", WAIT, || async {
        match http_get(addr, "/readyz").await {
            (200, body) if body.trim() == "leading" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let holder = run(
        alpha.kubectl().args([
            "-n",
            NS,
            "get",
            "lease",
            "dualmesh",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]),
        None,
    );
    assert_eq!(holder, POD_NAME);

    create_policy(&a, &example::<DualStackPolicy>("policy-ipv6-only.yaml")).await;
    create_meshcluster(&a, &example::<MeshCluster>("meshcluster-alpha.yaml")).await;
    let mut beta_mc: MeshCluster = example("meshcluster-beta.yaml");
    // So that removing it deletes the copies (the Role's delete is used).
    beta_mc
        .spec
        .federation
        .as_mut()
        .expect("beta's example has spec.federation")
        .delete_on_removal = true;
    create_meshcluster(&a, &beta_mc).await;

    // dualmesh creates each Istio namespace; then the gateways appear.
    wait_config_map(&a, "alpha").await;
    wait_config_map(&b, "beta").await;
    create_gateway(&a, "node-a", &["2001:db8:a::1", "192.0.2.10"]).await;
    create_gateway(&b, "node-b", &["2001:db8:b::1"]).await;

    let (alpha_mc, _) = wait_mc(&a, "alpha", "Ready", "True", "Ready", WAIT).await;
    let (beta_ready, _) = wait_mc(&a, "beta", "Ready", "True", "Ready", WAIT).await;
    assert_eq!(
        condition(&alpha_mc, "IstioConfigApplied").map(|c| c.1),
        Some("ConfigMapApplied".to_string())
    );
    assert_eq!(
        condition(&beta_ready, "SecretsSynced").map(|c| c.1),
        Some("Synced".to_string())
    );
    assert_eq!(
        external_ips(&a).await,
        Some(vec!["2001:db8:a::1".to_string()])
    );
    assert_eq!(
        external_ips(&b).await,
        Some(vec!["2001:db8:b::1".to_string()])
    );

    // Istio-native trust turned on in a running mesh: the charts get the
    // Istio namespaces dualmesh created as trust namespaces, then both
    // MeshClusters spec.trust. Both cacerts are written (create); one made
    // unreadable is re-issued at the next reconcile (get and patch).
    let operator_manifest = install(
        &alpha,
        "dualmesh",
        "dualmesh",
        &[
            "rbac.secretNamespaces={gloo-mesh}",
            "rbac.trustNamespaces={istio-system}",
        ],
    );
    let member_manifest = install(
        &beta,
        "dualmesh-member",
        "dualmesh-member",
        &["trustNamespaces={istio-system}"],
    );
    for mc in ["alpha", "beta"] {
        enable_trust(&a, mc).await;
    }
    for (client, mc) in [(&a, "alpha"), (&b, "beta")] {
        reissue_unreadable_cacerts(&a, client, mc).await;
    }

    // The health check Argo CD would run reads the real object as Healthy.
    let health = read(MESHCLUSTER_HEALTH);
    let (status, message) = run_health(&health, &serde_json::to_value(&alpha_mc).unwrap());
    assert_eq!(
        (status.as_str(), message.as_str()),
        ("Healthy", "all conditions are True")
    );

    // Istio's CRD arrives in both: the IstioOperator objects are published.
    for client in [&a, &b] {
        install_crd(client, ISTIO_OPERATOR_CRD).await;
    }
    for mc in ["alpha", "beta"] {
        wait_mc(
            &a,
            mc,
            "IstioConfigApplied",
            "True",
            "ConfigMapAndIstioOperatorApplied",
            WAIT,
        )
        .await;
    }

    // What the identities may do, and (the point) may not.
    for (answer, question) in [
        ("yes", "get secrets -n dualmesh-system"),
        ("yes", "watch secrets -n gloo-mesh"),
        ("yes", "patch services -n istio-system"),
        (
            "yes",
            "create leases.coordination.k8s.io -n dualmesh-system",
        ),
        ("yes", "patch secrets/cacerts -n istio-system"),
        ("no", "get secrets/istio-reader -n istio-system"),
        ("no", "get secrets -n kube-system"),
        ("no", "get secrets -n default"),
        ("no", "list secrets --all-namespaces"),
        // The content-hash key is created once; nothing may overwrite it.
        ("yes", "create secrets -n dualmesh-system"),
        ("no", "patch secrets -n dualmesh-system"),
        ("no", "delete services -n istio-system"),
        ("no", "update services -n istio-system"),
        ("no", "delete nodes"),
        ("no", "patch meshclusters.dualmesh.io -n default"),
        ("no", "delete meshclusters.dualmesh.io -n dualmesh-system"),
        ("no", "patch dualstackpolicies.dualmesh.io"),
        (
            "no",
            "get customresourcedefinitions/meshclusters.dualmesh.io",
        ),
        (
            "no",
            "patch leases.coordination.k8s.io/kube-scheduler -n dualmesh-system",
        ),
        ("no", "create clusterrolebindings"),
        ("no", "impersonate serviceaccounts"),
        ("no", "* *"),
    ] {
        let args: Vec<&str> = question.split_whitespace().collect();
        let yes = can_i(&alpha, &operator_kubeconfig, &args);
        assert_eq!(yes, answer == "yes", "operator: can-i {question}");
    }
    for (answer, question) in [
        ("yes", "patch secrets -n gloo-mesh"),
        ("yes", "patch services -n istio-system"),
        ("yes", "get secrets/cacerts -n istio-system"),
        ("no", "patch secrets/other -n istio-system"),
        ("no", "get secrets -n kube-system"),
        ("no", "get secrets -n dualmesh-system"),
        ("no", "list secrets --all-namespaces"),
        ("no", "list configmaps --all-namespaces"),
        ("no", "delete services -n istio-system"),
        ("no", "delete nodes"),
        (
            "no",
            "get customresourcedefinitions/meshclusters.dualmesh.io",
        ),
        ("no", "* *"),
    ] {
        let args: Vec<&str> = question.split_whitespace().collect();
        let yes = can_i(&beta, &member_kubeconfig, &args);
        assert_eq!(yes, answer == "yes", "member: can-i {question}");
    }

    // A change: each published object is updated in place (server-side
    // apply over what dualmesh created), which needs `patch`.
    let meshclusters: Api<MeshCluster> = Api::namespaced(a.clone(), NS);
    for mc in ["alpha", "beta"] {
        meshclusters
            .patch(
                mc,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"spec": {"istio": {"tag": "1.28.9"}}})),
            )
            .await
            .expect("change the MeshCluster's tag");
    }
    for (client, mc) in [(&a, "alpha"), (&b, "beta")] {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), GW_NS);
        let name = format!("{mc}-istiooperator");
        wait_for(
            &format!("{name} shows tag 1.28.9"),
            Duration::from_secs(30),
            || async {
                let cm = cms.get_opt(&name).await.map_err(|e| e.to_string())?;
                let yaml = cm
                    .and_then(|c| c.data)
                    .and_then(|d| d.get("istiooperator.yaml").cloned())
                    .unwrap_or_default();
                if yaml.contains("1.28.9") {
                    Ok(())
                } else {
                    Err(yaml)
                }
            },
        )
        .await;
        let ios = istio_operators(client);
        wait_for(
            &format!("{mc}'s IstioOperator shows tag 1.28.9"),
            Duration::from_secs(30),
            || async {
                let io = ios
                    .get_opt("istio-control-plane")
                    .await
                    .map_err(|e| e.to_string())?;
                let spec = io.map(|o| o.data["spec"].to_string()).unwrap_or_default();
                if spec.contains("1.28.9") {
                    Ok(())
                } else {
                    Err(spec)
                }
            },
        )
        .await;
    }

    // A rotation: the relay token's copy in beta was created, and is now
    // applied over (which needs `patch` on Secrets in gloo-mesh there).
    put_secret(
        &a,
        "gloo-mesh",
        "relay-identity-token-secret",
        &[("token", "relay-token-rotated")],
    )
    .await;
    wait_for(
        "beta's token copy holds the rotated token",
        Duration::from_secs(30),
        || async {
            match secret_value(&b, "gloo-mesh", "relay-identity-token-secret", "token").await {
                Some(v) if v == "relay-token-rotated" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    // Removal: dualmesh deletes what it published, and the synced copies.
    for mc in ["alpha", "beta"] {
        meshclusters
            .delete(mc, &DeleteParams::default())
            .await
            .expect("delete MeshCluster");
    }
    for mc in ["alpha", "beta"] {
        wait_gone(&meshclusters, mc).await;
    }
    for (client, mc) in [(&a, "alpha"), (&b, "beta")] {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), GW_NS);
        wait_gone(&cms, &format!("{mc}-istiooperator")).await;
        wait_gone(&istio_operators(client), "istio-control-plane").await;
    }
    let copies: Api<Secret> = Api::namespaced(b.clone(), "gloo-mesh");
    wait_gone(&copies, "relay-root-tls-secret").await;

    // SIGTERM, as at a rollout: it stops and releases the Lease.
    let status = operator.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "dualmesh did not stop cleanly on SIGTERM: {status:?}\n{}",
        operator.log_tail(20)
    );
    let log = operator.log();
    assert!(
        log.lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "DUALMESH_LOG_FORMAT=json: every log line is a JSON object"
    );
    assert!(log.contains("released the leader Lease"), "{log}");
    assert_least_privilege(
        &alpha,
        OPERATOR_SA,
        &operator_manifest,
        &[
            (
                "patch events.k8s.io/events cluster-wide",
                "sent only when the same Event repeats within kube's series window",
            ),
            (
                "get dualmesh.io/meshclusters in dualmesh-system",
                "sent only when a status write is answered 409 with the generation unchanged",
            ),
        ]
        .into_iter()
        .chain(SAIL_UNUSED)
        .collect::<Vec<_>>(),
    );
    assert_least_privilege(&beta, MEMBER_SA, &member_manifest, &SAIL_UNUSED);
}
