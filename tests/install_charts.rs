//! Istio's own Helm charts judge the values dualmesh renders: for every
//! example MeshCluster under every example policy (and for ambient), the
//! built helm renders `base`, `istiod`, `cni`, `gateway` and `ztunnel` from
//! the pinned istio.io/istio module with dualmesh's values files, and the
//! rendered objects carry the intent: istiod's env `ISTIO_DUAL_STACK`, the
//! `istio` ConfigMap's meshId, proxyMetadata and meshNetworks, the
//! Services' `ipFamilyPolicy`/`ipFamilies` in the policy's order, the
//! gateway's network label and sni-dnat, CNI's `AMBIENT_IPV6` and
//! ztunnel's `IPV6_ENABLED`.
//!
//! A typo'd value would be ignored by a chart without a schema, so every
//! key dualmesh sets must be one the chart's values.yaml declares (or a
//! free-form map there); the gateway chart's values.schema.json refuses
//! unknown keys itself. Both checks are shown to fail on a typo.
//!
//! The Sail objects' `spec.values` are these values (Sail renders exactly
//! these charts), so the istiod checks run on the Sail `Istio`'s values too.

mod common;

use std::process::Command;

use common::istio_charts::{chart_dir, charts};
use common::repo;
use dualmesh::api::{DualStackPolicy, IstioProfile, MeshCluster};
use dualmesh::desired::install::{helm, sail};
use dualmesh::desired::validate;
use serde_json::Value;

/// `helm template` of `chart` with `values`: Ok(objects) or Err(helm's output).
fn template(chart: &str, namespace: &str, values: &Value) -> Result<Vec<Value>, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, serde_json::to_string(values).unwrap()).unwrap();
    let out = Command::new(testplane::tools_bin().unwrap().join("helm"))
        .args(["template", chart, "-n", namespace, "-f"])
        .arg(&file)
        .arg(charts().join(chart_dir(chart)))
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)));
    }
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(|e| e.to_string())?;
    Ok(docs.into_iter().filter(|d| d.is_object()).collect())
}

fn find<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn env(container: &Value, name: &str) -> Option<String> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str().map(str::to_string))
}

/// Keys of `mine` that `declared` (a chart's defaults) lacks, as paths.
/// Arrays and free-form maps (`{}` in values.yaml) are not looked into.
fn undeclared(mine: &Value, declared: &Value, path: &str, out: &mut Vec<String>) {
    let (Some(mine), Some(declared)) = (mine.as_object(), declared.as_object()) else {
        return;
    };
    if declared.is_empty() {
        return;
    }
    for (key, value) in mine {
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match declared.get(key) {
            Some(d) => undeclared(value, d, &here, out),
            // Read by the charts' zzz_profile.yaml, not declared.
            None if path.is_empty() && key == "profile" => {}
            None => out.push(here),
        }
    }
}

/// The keys of a values file no chart value matches (after the chart's own
/// copy of `pilot.*` / `cni.*` to its top level).
fn typos(chart: &str, values: &Value) -> Vec<String> {
    let text =
        std::fs::read_to_string(charts().join(chart_dir(chart)).join("values.yaml")).unwrap();
    let defaults: Value = serde_saphyr::from_str(&text).unwrap();
    let mut declared = defaults["_internal_defaults_do_not_set"].clone();
    // meshConfig is Istio's MeshConfig, checked by istiod and istioctl.
    declared["meshConfig"] = serde_json::json!({});
    if chart == "gateway" {
        // Free-form: the Pods' and Service's labels (its defaults hold one).
        declared["labels"] = serde_json::json!({});
    }
    let mut mine = values.clone();
    let descoped = match chart {
        "istiod" => Some("pilot"),
        "cni" => Some("cni"),
        _ => None,
    };
    if let Some(scope) = descoped
        && let Some(inner) = mine.as_object_mut().and_then(|m| m.remove(scope))
    {
        for (k, v) in inner.as_object().unwrap() {
            mine[k] = v.clone();
        }
    }
    let mut out = Vec::new();
    undeclared(&mine, &declared, "", &mut out);
    out
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

fn load<T: serde::de::DeserializeOwned>(file: &str) -> T {
    serde_saphyr::from_str(&std::fs::read_to_string(repo().join("examples").join(file)).unwrap())
        .unwrap()
}

/// Every (MeshCluster, policy) pair of the examples, plus alpha in ambient.
fn cases() -> Vec<(String, MeshCluster, DualStackPolicy)> {
    let mut out = Vec::new();
    for policy_file in examples("policy-") {
        let policy: DualStackPolicy = load(&policy_file);
        for mc_file in examples("meshcluster-") {
            out.push((
                format!("{mc_file} under {policy_file}"),
                load(&mc_file),
                policy.clone(),
            ));
        }
        let mut ambient: MeshCluster = load("meshcluster-alpha.yaml");
        ambient.spec.istio.profile = IstioProfile::Ambient;
        out.push((
            format!("alpha in ambient under {policy_file}"),
            ambient,
            policy,
        ));
    }
    out
}

/// The istiod chart's objects carry the intent of `mc` under `policy`.
fn assert_istiod(
    case: &str,
    objects: &[Value],
    mc: &MeshCluster,
    (families, family_policy): (&[&str], &str),
    dual: bool,
) {
    let istiod = find(objects, "Deployment")[0];
    let container = &istiod["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env(container, "ISTIO_DUAL_STACK").as_deref(),
        dual.then_some("true"),
        "{case}: istiod env ISTIO_DUAL_STACK"
    );
    assert_eq!(
        env(container, "CLUSTER_ID").as_deref(),
        Some(mc.spec.cluster_name.as_str()),
        "{case}"
    );
    let service = find(objects, "Service")[0];
    assert_eq!(
        service["spec"]["ipFamilies"],
        serde_json::json!(families),
        "{case}"
    );
    assert_eq!(service["spec"]["ipFamilyPolicy"], family_policy, "{case}");
    let config = find(objects, "ConfigMap")
        .into_iter()
        .find(|c| {
            c["metadata"]["name"].as_str().unwrap().starts_with("istio")
                && c["data"]["mesh"].is_string()
        })
        .unwrap_or_else(|| panic!("{case}: no istio ConfigMap"));
    let mesh: Value = serde_saphyr::from_str(config["data"]["mesh"].as_str().unwrap()).unwrap();
    assert_eq!(
        mesh["defaultConfig"]["meshId"],
        mc.spec.mesh_id.as_str(),
        "{case}"
    );
    let metadata = &mesh["defaultConfig"]["proxyMetadata"];
    assert_eq!(metadata["ISTIO_META_DNS_CAPTURE"], "true", "{case}");
    assert_eq!(
        metadata.get("ISTIO_DUAL_STACK").and_then(Value::as_str),
        dual.then_some("true"),
        "{case}: proxyMetadata ISTIO_DUAL_STACK"
    );
    let networks: Value =
        serde_saphyr::from_str(config["data"]["meshNetworks"].as_str().unwrap()).unwrap();
    let network = &networks["networks"][mc.spec.network.as_str()];
    assert_eq!(
        network["endpoints"][0]["fromRegistry"],
        mc.spec.cluster_name.as_str(),
        "{case}"
    );
    assert_eq!(network["gateways"][0]["port"], 443, "{case}");
}

#[test]
fn istios_charts_render_dualmesh_values_with_the_dual_stack_switches_and_the_mesh_identity() {
    for (case, mc, policy) in cases() {
        let valid_mc = validate::validate_mesh_cluster(&mc.spec).unwrap();
        let valid_policy = validate::validate_policy(&policy.spec).unwrap();
        let families: Vec<&str> = policy.spec.ip_families.iter().map(|f| f.as_str()).collect();
        let dual = families.len() == 2;
        let family_policy = policy.spec.ip_family_policy.as_str();
        let ambient = mc.spec.istio.profile == IstioProfile::Ambient;
        let rendered = helm::build(&valid_mc, &valid_policy);
        let charts: Vec<&str> = rendered.files.iter().map(|f| f.chart).collect();
        let mut want = vec!["base", "istiod", "cni", "gateway"];
        if ambient {
            want.push("ztunnel");
        }
        assert_eq!(charts, want, "{case}");
        let ns = mc.spec.istio.namespace.as_str();
        for file in &rendered.files {
            assert_eq!(
                typos(file.chart, &file.values),
                Vec::<String>::new(),
                "{case}: {}",
                file.chart
            );
            let objects = template(file.chart, ns, &file.values)
                .unwrap_or_else(|e| panic!("{case}: helm template {} failed:\n{e}", file.chart));
            assert!(
                !objects.is_empty(),
                "{case}: {} rendered nothing",
                file.chart
            );
            match file.chart {
                "istiod" => assert_istiod(&case, &objects, &mc, (&families, family_policy), dual),
                "gateway" => {
                    let service = find(&objects, "Service")[0];
                    assert_eq!(
                        service["metadata"]["name"],
                        mc.spec.ingress_gateway.name.as_str()
                    );
                    assert_eq!(
                        service["spec"]["ipFamilies"],
                        serde_json::json!(families),
                        "{case}"
                    );
                    assert_eq!(
                        service["metadata"]["labels"]["topology.istio.io/network"],
                        mc.spec.network.as_str(),
                        "{case}"
                    );
                    let ports: Vec<i64> = service["spec"]["ports"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| p["port"].as_i64().unwrap())
                        .collect();
                    assert_eq!(ports, [15021, 15443, 15012, 15017], "{case}");
                    let deployment = find(&objects, "Deployment")[0];
                    let pod = &deployment["spec"]["template"];
                    assert_eq!(
                        pod["metadata"]["labels"]["topology.istio.io/network"],
                        mc.spec.network.as_str()
                    );
                    let proxy = &pod["spec"]["containers"][0];
                    assert_eq!(
                        env(proxy, "ISTIO_META_ROUTER_MODE").as_deref(),
                        Some("sni-dnat")
                    );
                    assert_eq!(
                        env(proxy, "ISTIO_META_REQUESTED_NETWORK_VIEW").as_deref(),
                        Some(mc.spec.network.as_str())
                    );
                }
                "cni" => {
                    let config = find(&objects, "ConfigMap")[0];
                    assert_eq!(
                        config["data"]["AMBIENT_ENABLED"],
                        if ambient { "true" } else { "false" },
                        "{case}"
                    );
                    assert_eq!(config["data"]["AMBIENT_IPV6"], "true", "{case}");
                }
                "ztunnel" => {
                    let ztunnel = find(&objects, "DaemonSet")[0];
                    let container = &ztunnel["spec"]["template"]["spec"]["containers"][0];
                    assert_eq!(
                        env(container, "IPV6_ENABLED").as_deref(),
                        Some("true"),
                        "{case}"
                    );
                }
                _ => {}
            }
        }
        // Sail's Istio carries the same values; istiod renders them alike.
        if validate::is_release(&mc.spec.istio.tag) {
            let sail = sail::build(&valid_mc, &valid_policy);
            let values = &sail.objects[0].body["spec"]["values"];
            assert_eq!(
                typos("istiod", values),
                Vec::<String>::new(),
                "{case}: Sail"
            );
            let objects = template("istiod", ns, values).unwrap();
            assert_istiod(
                &format!("{case} (Sail)"),
                &objects,
                &mc,
                (&families, family_policy),
                dual,
            );
        }
    }
}

fn one_case() -> (MeshCluster, DualStackPolicy) {
    (
        load("meshcluster-alpha.yaml"),
        load("policy-dual-stack-ipv6-primary.yaml"),
    )
}

#[test]
fn a_typo_in_a_values_file_is_caught_by_the_key_check_or_the_charts_schema() {
    let (mc, policy) = one_case();
    let valid_mc = validate::validate_mesh_cluster(&mc.spec).unwrap();
    let valid_policy = validate::validate_policy(&policy.spec).unwrap();
    let rendered = helm::build(&valid_mc, &valid_policy);
    let file = |chart: &str| {
        rendered
            .files
            .iter()
            .find(|f| f.chart == chart)
            .unwrap()
            .values
            .clone()
    };

    // istiod has no schema: helm renders a typo silently, the key check names it.
    let mut istiod = file("istiod");
    istiod["pilot"]["ipFamilyPolicies"] = istiod["pilot"]["ipFamilyPolicy"].take();
    istiod["global"]["multicluster"] = serde_json::json!({"clusterName": "x"});
    assert!(template("istiod", "istio-system", &istiod).is_ok());
    assert_eq!(
        typos("istiod", &istiod),
        ["global.multicluster", "ipFamilyPolicies"]
    );

    // The gateway chart's values.schema.json refuses it at helm's door.
    let mut gateway = file("gateway");
    gateway["service"]["ipFamilyPolicy"] = serde_json::json!("DualStack");
    let err = template("gateway", "istio-system", &gateway).unwrap_err();
    assert!(err.contains("ipFamilyPolicy"), "{err}");
    let mut gateway = file("gateway");
    gateway["networkGatway"] = serde_json::json!("x");
    let err = template("gateway", "istio-system", &gateway).unwrap_err();
    assert!(err.contains("networkGatway"), "{err}");
}
