//! Least privilege judged by the real API server's audit log: every
//! request an identity made (reads too, under [`AUDIT_EVERYTHING_OF_DUALMESH`]),
//! none refused, and every rule a rendered chart grants used.

use std::collections::{BTreeMap, BTreeSet};

use std::path::Path;
use std::process::Command;

use super::charts::{documents, output};
use serde_json::Value;
use testplane::ControlPlane;

/// Audit every request (reads too) of the two dualmesh identities; writes of
/// everyone else as the harness does by default.
pub const AUDIT_EVERYTHING_OF_DUALMESH: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  users:
  - system:serviceaccount:dualmesh-system:dualmesh
  - system:serviceaccount:dualmesh-system:dualmesh-member
- level: Metadata
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
- level: None
"#;

/// One request as the audit log recorded it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Request {
    pub verb: String,
    pub group: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub code: Option<i64>,
}

/// Every request `user` made, once each (a watch is logged when its
/// response starts, and again when it ends).
pub fn requests_by(plane: &ControlPlane, user: &str) -> Vec<Request> {
    let log = plane.audit_text().expect("the audit log");
    let mut by_id: BTreeMap<String, Request> = BTreeMap::new();
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["user"]["username"] != user || v["objectRef"].is_null() {
            continue;
        }
        let s = |x: &Value| x.as_str().map(str::to_string);
        let r = &v["objectRef"];
        let resource = match s(&r["subresource"]) {
            Some(sub) => format!("{}/{sub}", s(&r["resource"]).unwrap_or_default()),
            None => s(&r["resource"]).unwrap_or_default(),
        };
        by_id.insert(
            s(&v["auditID"]).unwrap_or_default(),
            Request {
                verb: s(&v["verb"]).unwrap_or_default(),
                group: s(&r["apiGroup"]).unwrap_or_default(),
                resource,
                namespace: s(&r["namespace"]),
                name: s(&r["name"]),
                code: v["responseStatus"]["code"].as_i64(),
            },
        );
    }
    by_id.into_values().collect()
}

/// One permission: a verb on a resource, cluster-wide (`namespace` None) or
/// in one namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Permission {
    pub namespace: Option<String>,
    pub group: String,
    pub resource: String,
    pub verb: String,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        match &self.namespace {
            Some(ns) => write!(f, "{} {group}/{} in {ns}", self.verb, self.resource),
            None => write!(f, "{} {group}/{} cluster-wide", self.verb, self.resource),
        }
    }
}

/// Every permission the Roles and ClusterRoles of a rendered chart grant.
/// Fails on wildcards: the charts must name everything.
pub fn permissions(manifest: &str) -> BTreeSet<Permission> {
    let mut out = BTreeSet::new();
    for doc in documents(manifest) {
        let namespace = match doc["kind"].as_str() {
            Some("ClusterRole") => None,
            Some("Role") => Some(doc["metadata"]["namespace"].as_str().unwrap().to_string()),
            _ => continue,
        };
        for rule in doc["rules"].as_array().unwrap() {
            let list = |k: &str| -> Vec<String> {
                rule[k]
                    .as_array()
                    .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default()
            };
            for group in list("apiGroups") {
                for resource in list("resources") {
                    for verb in list("verbs") {
                        assert!(
                            ![&group, &resource, &verb].iter().any(|x| x.contains('*')),
                            "wildcard in {rule}"
                        );
                        out.insert(Permission {
                            namespace: namespace.clone(),
                            group: group.clone(),
                            resource: resource.clone(),
                            verb,
                        });
                    }
                }
            }
        }
    }
    out
}

pub fn used(requests: &[Request], p: &Permission) -> bool {
    requests.iter().any(|r| {
        // A server-side apply that creates the object is logged as a patch
        // answered 201, and the API server authorizes it as create too.
        let verb_matches =
            r.verb == p.verb || (p.verb == "create" && r.verb == "patch" && r.code == Some(201));
        verb_matches
            && r.group == p.group
            && r.resource == p.resource
            && (p.namespace.is_none() || r.namespace == p.namespace)
    })
}

/// Asserts that `user` was refused nothing, and that every permission
/// `manifest` grants was used, except those in `may_be_unused` (with why).
pub fn assert_least_privilege(
    plane: &ControlPlane,
    user: &str,
    manifest: &str,
    may_be_unused: &[(&str, &str)],
) {
    let requests = requests_by(plane, user);
    assert!(
        requests.len() > 20,
        "the audit log holds only {} requests of {user}: is the audit policy in effect?",
        requests.len()
    );
    let refused: Vec<&Request> = requests.iter().filter(|r| r.code == Some(403)).collect();
    assert!(
        refused.is_empty(),
        "{user} was refused (the chart's RBAC is missing a rule):\n{refused:#?}"
    );
    let unused: Vec<String> = permissions(manifest)
        .iter()
        .filter(|p| !used(&requests, p))
        .map(|p| p.to_string())
        .filter(|p| !may_be_unused.iter().any(|(u, _)| u == p))
        .collect();
    assert!(
        unused.is_empty(),
        "{user} was granted but never used (drop the rule, or exercise it here):\n{}",
        unused.join("\n")
    );
}

/// `kubectl auth can-i` as the identity in `kubeconfig`.
pub fn can_i(plane: &ControlPlane, kubeconfig: &Path, args: &[&str]) -> bool {
    let out = output(
        Command::new(plane.tools_bin().join("kubectl"))
            .env("KUBECONFIG", kubeconfig)
            .args(["auth", "can-i"])
            .args(args),
        None,
    );
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match answer.as_str() {
        "yes" => true,
        "no" => false,
        _ => panic!(
            "kubectl auth can-i {args:?}: {answer} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// No Sail Operator CRDs on these planes (their listing at a MeshCluster's
/// deletion is answered 404, which uses `list`); tests/install_sail.rs
/// applies Sail objects.
pub const SAIL_UNUSED: [(&str, &str); 12] = [
    (
        "get sailoperator.io/istios cluster-wide",
        "installWith Sail only",
    ),
    (
        "create sailoperator.io/istios cluster-wide",
        "installWith Sail only",
    ),
    (
        "patch sailoperator.io/istios cluster-wide",
        "installWith Sail only",
    ),
    (
        "delete sailoperator.io/istios cluster-wide",
        "installWith Sail only",
    ),
    (
        "get sailoperator.io/istiocnis cluster-wide",
        "installWith Sail only",
    ),
    (
        "create sailoperator.io/istiocnis cluster-wide",
        "installWith Sail only",
    ),
    (
        "patch sailoperator.io/istiocnis cluster-wide",
        "installWith Sail only",
    ),
    (
        "delete sailoperator.io/istiocnis cluster-wide",
        "installWith Sail only",
    ),
    (
        "get sailoperator.io/ztunnels cluster-wide",
        "installWith Sail only",
    ),
    (
        "create sailoperator.io/ztunnels cluster-wide",
        "installWith Sail only",
    ),
    (
        "patch sailoperator.io/ztunnels cluster-wide",
        "installWith Sail only",
    ),
    (
        "delete sailoperator.io/ztunnels cluster-wide",
        "installWith Sail only",
    ),
];
