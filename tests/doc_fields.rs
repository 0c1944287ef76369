//! Docs and API cannot drift: every `spec.`/`status.` field path named in
//! README.md, docs/ and examples/ exists in the generated CRD schemas
//! (crds/*.yaml), or is one of the few fields of built-in kinds the docs
//! explain (checked against that kind's own schema); every key of an example
//! object, and of a MeshCluster or DualStackPolicy in a docs YAML block, is
//! a field of its kind; and a field written as `name: value` in inline code
//! has the API's exact spelling (the defect this test was written for:
//! `manageExternalIPs` documented, `manageExternalIps` served).

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fields of built-in kinds the docs name by path, and their kind. Each must
/// exist in that kind's schema and must not exist in dualmesh's CRDs (else
/// it would hide a wrong path of ours).
const BUILT_IN: &[(&str, &str)] = &[
    ("spec.externalIPs", "Service"),
    ("spec.nodeName", "Pod"),
    ("status.addresses", "Node"),
    ("spec.podCIDRs", "Node"),
];

/// The openAPIV3Schema of each CRD in crds/, by kind.
fn crd_schemas() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("crds"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    files
        .iter()
        .map(|f| {
            let crd: Value = serde_saphyr::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_string();
            let versions = crd["spec"]["versions"].as_array().unwrap();
            assert_eq!(versions.len(), 1, "{}: one version", f.display());
            (kind, versions[0]["schema"]["openAPIV3Schema"].clone())
        })
        .collect()
}

/// A built-in kind's schema, every `$ref` inlined.
fn built_in_schema(kind: &str) -> Value {
    let mut generator = schemars::generate::SchemaSettings::default()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let schema = match kind {
        "Service" => generator.root_schema_for::<Service>(),
        "Pod" => generator.root_schema_for::<Pod>(),
        "Node" => generator.root_schema_for::<Node>(),
        other => panic!("no schema for {other}"),
    };
    serde_json::to_value(schema).unwrap()
}

/// The schema of `path` (segments) under `schema`, looking through arrays
/// and into maps. A deprecated property (an old spelling still read, its
/// description starting with "Deprecated") does not count: docs and
/// examples must use the current name.
fn lookup<'a>(schema: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut node = schema;
    for seg in path {
        while let Some(items) = node.get("items") {
            node = items;
        }
        node = match node.get("properties").and_then(|p| p.get(*seg)) {
            Some(child) if is_deprecated(child) => return None,
            Some(child) => child,
            None => node.get("additionalProperties").filter(|a| a.is_object())?,
        };
    }
    Some(node)
}

fn is_deprecated(schema: &Value) -> bool {
    schema["description"]
        .as_str()
        .is_some_and(|d| d.starts_with("Deprecated"))
}

fn segments(path: &str) -> Vec<&str> {
    path.split('.').collect()
}

/// Every current (not deprecated) property name anywhere in `schema`.
fn property_names(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                let current = props.iter().filter(|(_, s)| !is_deprecated(s));
                out.extend(current.map(|(name, _)| name.clone()));
            }
            map.values().for_each(|v| property_names(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| property_names(v, out)),
        _ => {}
    }
}

/// README.md and every Markdown file under docs/, sorted.
fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut out = vec![repo().join("README.md")];
    walk(&repo().join("docs"), &mut out);
    out.sort();
    out
}

fn example_files() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    out.sort();
    out
}

/// The `spec.`/`status.` paths in `text`, without list indexes
/// (`spec.federation.secrets[0].target` is `spec.federation.secrets.target`).
/// File names (`status.rs`) and paths inside longer dotted names are skipped.
fn field_paths(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        let word = |k: usize| {
            k < i
                && matches!(bytes[k], b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'/' | b'-')
        };
        // Not inside a longer name (`x.spec.y`, `src/status.rs`); a JSONPath's
        // leading dot (`.status.conditions`) is fine.
        let inside = i > 0
            && (word(i - 1)
                || (bytes[i - 1] == b'.' && i > 1 && (word(i - 2) || bytes[i - 2] == b'.')));
        let starts = (rest.starts_with("spec.") || rest.starts_with("status.")) && !inside;
        if !starts {
            i += 1;
            continue;
        }
        let mut parts: Vec<&str> = Vec::new();
        let mut j = i;
        loop {
            let seg_len = text[j..]
                .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .unwrap_or(text.len() - j);
            if seg_len == 0 || !bytes[j].is_ascii_alphabetic() {
                break;
            }
            parts.push(&text[j..j + seg_len]);
            j += seg_len;
            // Skip list indexes and JSONPath filters: `[0]`, `[?(@.type=="Ready")]`.
            while j < bytes.len() && bytes[j] == b'[' {
                match text[j..].find(']') {
                    Some(end) => j += end + 1,
                    None => break,
                }
            }
            if j + 1 < bytes.len() && bytes[j] == b'.' && bytes[j + 1].is_ascii_alphabetic() {
                j += 1;
            } else {
                break;
            }
        }
        let is_file = parts.len() == 2 && ["rs", "md", "yaml", "lua"].contains(&parts[1]);
        if parts.len() >= 2 && !is_file {
            out.push(parts.join("."));
        }
        i = j.max(i + 1);
    }
    out
}

#[test]
fn field_paths_are_found_in_prose_and_yaml() {
    assert_eq!(
        field_paths(
            "set `spec.ingressGateway.manageExternalIPs: false`, see spec.federation.secrets[0].target. \
             Also `.status.conditions[?(@.type==\"Ready\")].status`, (`status.rs`), x.spec.y and spec."
        ),
        [
            "spec.ingressGateway.manageExternalIPs",
            "spec.federation.secrets.target",
            "status.conditions.status",
        ]
    );
}

/// `key: value` spans in inline code, e.g. `manageExternalIPs: false`.
fn inline_keys(text: &str) -> Vec<&str> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|code| {
            let (key, _) = code.split_once(": ")?;
            let ok = key.starts_with(|c: char| c.is_ascii_lowercase())
                && key.chars().all(|c| c.is_ascii_alphanumeric());
            ok.then_some(key)
        })
        .collect()
}

/// Every key path under `spec` and `status` of a YAML object, lists looked
/// through, map values (labels, env) not descended into.
fn key_paths(value: &Value, prefix: &str, schema: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if prefix.is_empty() && k != "spec" && k != "status" {
                    continue;
                }
                out.push(path.clone());
                // A map-typed field (`additionalProperties`) holds data, not fields.
                let is_map = lookup(schema, &segments(&path)).is_some_and(|s| {
                    s.get("properties").is_none() && s.get("additionalProperties").is_some()
                });
                if !is_map {
                    key_paths(v, &path, schema, out);
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| key_paths(item, prefix, schema, out)),
        _ => {}
    }
}

#[test]
fn every_field_path_in_readme_docs_and_examples_exists_in_the_crds() {
    let crds = crd_schemas();
    let in_crds = |path: &str| {
        crds.iter()
            .any(|(_, s)| lookup(s, &segments(path)).is_some())
    };
    for (path, kind) in BUILT_IN {
        assert!(
            lookup(&built_in_schema(kind), &segments(path)).is_some(),
            "{kind} has no field {path}: fix BUILT_IN"
        );
        assert!(
            !in_crds(path),
            "{path} is a field of dualmesh's CRDs too: remove it from BUILT_IN"
        );
    }
    let mut all_names = Vec::new();
    for (_, schema) in &crds {
        property_names(schema, &mut all_names);
    }

    let mut missing = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(repo()).unwrap().display().to_string();
        for path in field_paths(&text) {
            checked += 1;
            if !in_crds(&path) && !BUILT_IN.iter().any(|(p, _)| *p == path) {
                missing.push(format!("{name}: {path}"));
            }
        }
        for key in inline_keys(&text) {
            checked += 1;
            let near = all_names.iter().find(|n| n.eq_ignore_ascii_case(key));
            if near.is_some_and(|n| n != key) {
                missing.push(format!(
                    "{name}: `{key}:` is spelled `{}:` in the API",
                    near.unwrap()
                ));
            }
        }
        // Objects of dualmesh's kinds in YAML blocks are checked key by key.
        for block in text.split("```yaml\n").skip(1) {
            let body = &block[..block.find("```").expect("a closed code block")];
            let docs: Vec<Value> = serde_saphyr::from_multiple(body)
                .unwrap_or_else(|e| panic!("{name}: a YAML block does not parse: {e}\n{body}"));
            for doc in docs {
                check_object(&crds, &doc, &name, &mut checked, &mut missing);
            }
        }
    }
    let mut objects = 0;
    for file in example_files() {
        let name = file.strip_prefix(repo()).unwrap().display().to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        for path in field_paths(&text) {
            checked += 1;
            if !in_crds(&path) {
                missing.push(format!("{name}: {path}"));
            }
        }
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        for doc in docs {
            objects += check_object(&crds, &doc, &name, &mut checked, &mut missing);
        }
    }
    assert!(
        objects >= 5,
        "only {objects} example objects of dualmesh's kinds"
    );
    assert!(
        checked >= 100,
        "only {checked} fields checked: is the scan broken?"
    );
    assert!(
        missing.is_empty(),
        "fields named in the docs that the CRDs do not have (fix the docs or the API):\n{}",
        missing.join("\n")
    );
}

/// Checks every key path of `doc` if it is a MeshCluster or DualStackPolicy;
/// returns 1 if it was one.
fn check_object(
    crds: &[(String, Value)],
    doc: &Value,
    name: &str,
    checked: &mut usize,
    missing: &mut Vec<String>,
) -> usize {
    let Some((kind, schema)) = crds
        .iter()
        .find(|(kind, _)| doc["kind"].as_str() == Some(kind))
    else {
        return 0;
    };
    let mut paths = Vec::new();
    key_paths(doc, "", schema, &mut paths);
    for path in paths {
        *checked += 1;
        if lookup(schema, &segments(&path)).is_none() {
            missing.push(format!("{name}: {kind} {path}"));
        }
    }
    1
}

#[test]
fn a_wrong_field_is_found() {
    // The check above can fail: a misspelt field is not found, and the old
    // spelling (still in the schema, deprecated) does not count.
    let crds = crd_schemas();
    let (_, mc) = crds.iter().find(|(k, _)| k == "MeshCluster").unwrap();
    let gw = lookup(mc, &segments("spec.ingressGateway")).unwrap();
    assert!(gw["properties"]["manageExternalIps"].is_object());
    assert!(lookup(mc, &segments("spec.ingressGateway.manageExternalIPs")).is_some());
    assert!(lookup(mc, &segments("spec.ingressGateway.manageExternalIps")).is_none());
    assert!(lookup(mc, &segments("spec.ingressGateway.manageExternalIp")).is_none());
    assert_eq!(
        inline_keys("set `manageExternalIps: false` or `a b: c`"),
        ["manageExternalIps"]
    );
    assert!(lookup(mc, &segments("spec.istio.pilotEnv.ANY_NAME")).is_some());
    assert!(lookup(mc, &segments("spec.federation.secrets.keys.from")).is_some());
    assert!(lookup(mc, &segments("spec.federation.secrets.keys.form")).is_none());
}
