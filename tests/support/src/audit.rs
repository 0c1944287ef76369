//! The API server's audit log: the policy planes run with, and the write
//! requests read back from it.

/// Audit writes only (reads would fill the disk), at Metadata level: verb,
/// user, object; never request bodies.
pub(crate) const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
- level: None
"#;

/// One write request as the API server's audit log recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub user: String,
    pub verb: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub code: Option<i64>,
    /// When the API server received the request (`requestReceivedTimestamp`).
    pub received: Option<k8s_openapi::jiff::Timestamp>,
}

/// Every write request `user` made, from the audit log's text (complete
/// responses only).
pub(crate) fn writes_by(text: &str, user: &str) -> Vec<Write> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["stage"] != "ResponseComplete" || v["user"]["username"] != user {
            continue;
        }
        let s = |x: &serde_json::Value| x.as_str().map(str::to_string);
        out.push(Write {
            user: user.to_string(),
            verb: s(&v["verb"]).unwrap_or_default(),
            resource: s(&v["objectRef"]["resource"]).unwrap_or_default(),
            subresource: s(&v["objectRef"]["subresource"]),
            namespace: s(&v["objectRef"]["namespace"]),
            name: s(&v["objectRef"]["name"]),
            code: v["responseStatus"]["code"].as_i64(),
            received: v["requestReceivedTimestamp"]
                .as_str()
                .and_then(|t| t.parse().ok()),
        });
    }
    out
}
