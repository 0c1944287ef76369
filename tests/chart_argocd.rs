//! The Argo CD health checks (docs/argocd/) run in a real Lua 5.1, and
//! docs/argocd.md holds each of them verbatim.

mod common;

use common::charts::*;
use serde_json::{Value, json};

fn ready(status: &str, generation: i64, message: &str) -> Value {
    json!({"type": "Ready", "status": status, "reason": if status == "True" { "Ready" } else { "NotReady" },
           "message": message, "observedGeneration": generation,
           "lastTransitionTime": "2026-01-01T00:00:00Z"})
}

fn object(kind: &str, generation: Option<i64>, status: Option<Value>) -> Value {
    let mut obj = json!({"apiVersion": "dualmesh.io/v1alpha1", "kind": kind,
                         "metadata": {"name": "alpha", "namespace": "dualmesh-system"},
                         "spec": {}});
    if let Some(g) = generation {
        obj["metadata"]["generation"] = json!(g);
    }
    if let Some(s) = status {
        obj["status"] = s;
    }
    obj
}

/// A case for the health checks: what it is, `metadata.generation`, the
/// status, and the health and message Argo CD must show.
type HealthCase = (
    &'static str,
    Option<i64>,
    Option<Value>,
    &'static str,
    &'static str,
);

#[test]
fn the_argo_cd_health_checks_read_ready_and_the_observed_generation() {
    let valid = json!({"type": "Valid", "status": "True", "reason": "Valid", "message": "ok",
                       "observedGeneration": 3, "lastTransitionTime": "2026-01-01T00:00:00Z"});
    let failing = "not True: GatewayAddressesReady (NoAddressOfFamily: no eligible IPv6 address)";
    let cases: Vec<HealthCase> = vec![
        (
            "Ready=True, current",
            Some(3),
            Some(
                json!({"observedGeneration": 3, "conditions": [valid, ready("True", 3, "all conditions are True")]}),
            ),
            "Healthy",
            "all conditions are True",
        ),
        (
            "Ready=False",
            Some(3),
            Some(json!({"observedGeneration": 3, "conditions": [ready("False", 3, failing)]})),
            "Degraded",
            failing,
        ),
        (
            "Ready=Unknown",
            Some(3),
            Some(json!({"observedGeneration": 3, "conditions": [ready("Unknown", 3, "checking")]})),
            "Progressing",
            "checking",
        ),
        (
            "no status",
            Some(1),
            None,
            "Progressing",
            "Waiting for dualmesh to report status",
        ),
        (
            "status without conditions",
            Some(1),
            Some(json!({})),
            "Progressing",
            "Waiting for dualmesh to report status",
        ),
        (
            "no Ready condition",
            Some(3),
            Some(json!({"observedGeneration": 3, "conditions": [valid]})),
            "Progressing",
            "Waiting for the Ready condition",
        ),
        (
            "stale observedGeneration",
            Some(4),
            Some(
                json!({"observedGeneration": 3, "conditions": [ready("True", 3, "all conditions are True")]}),
            ),
            "Progressing",
            "Waiting for dualmesh to reconcile generation 4",
        ),
        (
            "no observedGeneration yet",
            Some(1),
            Some(json!({"conditions": [ready("True", 1, "all conditions are True")]})),
            "Progressing",
            "Waiting for dualmesh to reconcile generation 1",
        ),
        (
            "stale Ready condition",
            Some(4),
            Some(
                json!({"observedGeneration": 4, "conditions": [ready("True", 3, "all conditions are True")]}),
            ),
            "Progressing",
            "Waiting for Ready of generation 4",
        ),
        (
            "no generation (Ready decides)",
            None,
            Some(json!({"conditions": [ready("False", 2, failing)]})),
            "Degraded",
            failing,
        ),
    ];
    for (file, kind) in [
        (MESHCLUSTER_HEALTH, "MeshCluster"),
        (POLICY_HEALTH, "DualStackPolicy"),
    ] {
        let script = read(file);
        for (case, generation, status, want_status, want_message) in &cases {
            let obj = object(kind, *generation, status.clone());
            let (status, message) = run_health(&script, &obj);
            assert_eq!(
                (status.as_str(), message.as_str()),
                (*want_status, *want_message),
                "{file}: {case}"
            );
        }
    }
}

/// The fenced blocks of `lang` in a Markdown text.
fn fenced<'a>(markdown: &'a str, lang: &str) -> Vec<&'a str> {
    let open = format!("```{lang}\n");
    let mut out = Vec::new();
    let mut rest = markdown;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let end = body.find("```").expect("a closed code block");
        out.push(&body[..end]);
        rest = &body[end + 3..];
    }
    out
}

/// Every string value under `key`, anywhere in `v`.
fn values_of(v: &Value, key: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, item) in m {
                if k == key
                    && let Some(s) = item.as_str()
                {
                    out.push(s.to_string());
                }
                values_of(item, key, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| values_of(i, key, out)),
        _ => {}
    }
}

#[test]
fn docs_argocd_md_holds_each_health_check_verbatim() {
    let doc = read("docs/argocd.md");
    let lua_blocks = fenced(&doc, "lua");
    let yaml_blocks: Vec<Value> = fenced(&doc, "yaml")
        .iter()
        .map(|b| {
            serde_saphyr::from_str(b).unwrap_or_else(|e| {
                panic!("a YAML block in docs/argocd.md does not parse: {e}\n{b}")
            })
        })
        .collect();
    for (file, kind) in [
        (MESHCLUSTER_HEALTH, "MeshCluster"),
        (POLICY_HEALTH, "DualStackPolicy"),
    ] {
        let script = read(file);
        assert!(
            lua_blocks.contains(&script.as_str()),
            "docs/argocd.md has no lua block equal to {file}"
        );
        // argocd-cm and the argo-cd chart's values both carry it unchanged.
        let mut found = Vec::new();
        for block in &yaml_blocks {
            values_of(
                block,
                &format!("resource.customizations.health.dualmesh.io_{kind}"),
                &mut found,
            );
        }
        assert_eq!(found.len(), 2, "{kind}: {found:?}");
        for f in found {
            assert!(
                f == script,
                "a YAML snippet's {kind} health check differs from {file}"
            );
        }
    }
    // The ignoreDifferences entry names dualmesh's field manager and the field.
    let mut managers = Vec::new();
    let mut pointers = Vec::new();
    for block in &yaml_blocks {
        if let Some(entries) = block["spec"]["ignoreDifferences"].as_array() {
            for e in entries {
                managers.push(serde_json::to_value(&e["managedFieldsManagers"]).unwrap());
                pointers.push(serde_json::to_value(&e["jsonPointers"]).unwrap());
            }
        }
    }
    assert_eq!(managers, vec![json!([dualmesh::controller::FIELD_MANAGER])]);
    assert_eq!(pointers, vec![json!(["/spec/externalIPs"])]);
    assert!(doc.contains("RespectIgnoreDifferences=true"));
}
