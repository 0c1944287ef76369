//! Vets a member cluster's kubeconfig before dualmesh builds a client from
//! it. Pure: no client, no file access, no clock.
//!
//! The kubeconfig comes from a Secret, and whoever can write that Secret
//! must not be able to make the operator read its own files (its service
//! account token, say, sent to a server of their choosing) or run commands.
//! So only inline credentials are accepted:
//!
//! - refused anywhere in the file: `exec`, `auth-provider`, `tokenFile`,
//!   `client-certificate`, `client-key`, `username`, `password` (in any
//!   user) and `certificate-authority` (in any cluster), even where an
//!   inline value would take precedence;
//! - the current context must exist, name a cluster and a user that exist,
//!   and the user must carry a non-empty `token` or both
//!   `client-certificate-data` and `client-key-data`;
//! - the current cluster's `server` must be an `https://` URL without user
//!   information, query or fragment, and `insecure-skip-tls-verify` must not
//!   be true: credentials are only sent over verified TLS. Plain `http` is
//!   refused, with no switch to allow it.
//!
//! Error texts never contain credential values, key or certificate data, or
//! the parser's own message (which may quote the input). They may name
//! contexts, clusters and users, and show the server URL once it is known to
//! carry no user information.
//!
//! Build the client from the [`Kubeconfig`] that [`vet`] returns (not from
//! the raw bytes again), with the default `KubeConfigOptions` (no context,
//! cluster or user override): those are what was checked.

use std::fmt;

use kube::config::{AuthInfo, Kubeconfig, KubeconfigError};
use secrecy::{ExposeSecret, SecretString};

/// Why a kubeconfig was refused: the offending entry (YAML path within the
/// kubeconfig, e.g. `users[0].user.exec`; empty for the document as a whole)
/// and what is wrong. Never holds credential data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VetError {
    /// The entry, as a path in the kubeconfig (`users[0].user.exec`), or
    /// empty when the whole document is at fault.
    pub field: String,
    /// What is wrong and, where it helps, what to do.
    pub message: String,
}

impl VetError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for VetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for VetError {}

/// Parses and checks a member's kubeconfig (the bytes of its Secret key);
/// returns it only when a client built from it (with default options) uses
/// inline credentials over verified https. See the module documentation for
/// the rules.
pub fn vet(raw: &[u8]) -> Result<Kubeconfig, VetError> {
    let text = std::str::from_utf8(raw).map_err(|e| {
        VetError::new(
            "",
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    let config = Kubeconfig::from_yaml(text).map_err(parse_error)?;
    refuse_indirections(&config)?;
    check_current(&config)?;
    Ok(config)
}

/// The parser's message may quote the input, so only its line is kept.
fn parse_error(e: KubeconfigError) -> VetError {
    let message = match &e {
        KubeconfigError::Parse(inner) => match inner.location().map(|l| l.line()) {
            Some(line) if line > 0 => format!("not valid kubeconfig YAML (line {line})"),
            _ => "not valid kubeconfig YAML".to_string(),
        },
        KubeconfigError::KindMismatch => {
            "not a valid kubeconfig: its YAML documents disagree on kind".to_string()
        }
        KubeconfigError::ApiVersionMismatch => {
            "not a valid kubeconfig: its YAML documents disagree on apiVersion".to_string()
        }
        _ => "not a valid kubeconfig".to_string(),
    };
    VetError::new("", message)
}

/// Entries that make a client read files or run commands, or that carry
/// basic-auth credentials: refused wherever they appear.
fn refuse_indirections(config: &Kubeconfig) -> Result<(), VetError> {
    for (i, named) in config.clusters.iter().enumerate() {
        if let Some(cluster) = &named.cluster
            && cluster.certificate_authority.is_some()
        {
            return Err(VetError::new(
                format!("clusters[{i}].cluster.certificate-authority"),
                "is a file path, which dualmesh does not read: use certificate-authority-data",
            ));
        }
    }
    for (i, named) in config.auth_infos.iter().enumerate() {
        let Some(user) = &named.auth_info else {
            continue;
        };
        let refused: [(&str, bool, &str); 7] = [
            (
                "exec",
                user.exec.is_some(),
                "runs a command, which dualmesh does not do: use token or client-certificate-data and client-key-data",
            ),
            (
                "auth-provider",
                user.auth_provider.is_some(),
                "is a plugin, which dualmesh does not run: use token or client-certificate-data and client-key-data",
            ),
            (
                "tokenFile",
                user.token_file.is_some(),
                "is a file path, which dualmesh does not read: use token",
            ),
            (
                "client-certificate",
                user.client_certificate.is_some(),
                "is a file path, which dualmesh does not read: use client-certificate-data",
            ),
            (
                "client-key",
                user.client_key.is_some(),
                "is a file path, which dualmesh does not read: use client-key-data",
            ),
            (
                "username",
                user.username.is_some(),
                "basic authentication is not accepted: use token or client-certificate-data and client-key-data",
            ),
            (
                "password",
                user.password.is_some(),
                "basic authentication is not accepted: use token or client-certificate-data and client-key-data",
            ),
        ];
        if let Some((key, _, why)) = refused.iter().find(|(_, set, _)| *set) {
            return Err(VetError::new(format!("users[{i}].user.{key}"), *why));
        }
    }
    Ok(())
}

/// The current context, its cluster and its user.
fn check_current(config: &Kubeconfig) -> Result<(), VetError> {
    let current = config
        .current_context
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            VetError::new(
                "current-context",
                "is missing: name the context dualmesh should use",
            )
        })?;
    let (ci, named_context) = config
        .contexts
        .iter()
        .enumerate()
        .find(|(_, c)| c.name == current)
        .ok_or_else(|| {
            VetError::new(
                "current-context",
                format!("names context {current:?}, which is not in contexts"),
            )
        })?;
    let context = named_context
        .context
        .as_ref()
        .ok_or_else(|| VetError::new(format!("contexts[{ci}].context"), "is missing"))?;

    let (ki, named_cluster) = config
        .clusters
        .iter()
        .enumerate()
        .find(|(_, c)| c.name == context.cluster)
        .ok_or_else(|| {
            VetError::new(
                format!("contexts[{ci}].context.cluster"),
                format!(
                    "names cluster {:?}, which is not in clusters",
                    context.cluster
                ),
            )
        })?;
    let cluster = named_cluster
        .cluster
        .as_ref()
        .ok_or_else(|| VetError::new(format!("clusters[{ki}].cluster"), "is missing"))?;
    let server_field = format!("clusters[{ki}].cluster.server");
    let server = cluster
        .server
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| VetError::new(&server_field, "is missing"))?;
    check_server(server).map_err(|m| VetError::new(&server_field, m))?;
    if cluster.insecure_skip_tls_verify == Some(true) {
        return Err(VetError::new(
            format!("clusters[{ki}].cluster.insecure-skip-tls-verify"),
            "is true: dualmesh sends credentials only over verified TLS; set certificate-authority-data instead",
        ));
    }

    let user_name = context
        .user
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            VetError::new(
                format!("contexts[{ci}].context.user"),
                "is missing: dualmesh needs a token or a client certificate",
            )
        })?;
    let (ui, named_user) = config
        .auth_infos
        .iter()
        .enumerate()
        .find(|(_, u)| u.name == user_name)
        .ok_or_else(|| {
            VetError::new(
                format!("contexts[{ci}].context.user"),
                format!("names user {user_name:?}, which is not in users"),
            )
        })?;
    let no_credentials = || {
        VetError::new(
            format!("users[{ui}].user"),
            "has no credentials: dualmesh accepts token, or client-certificate-data with client-key-data",
        )
    };
    let user = named_user.auth_info.as_ref().ok_or_else(no_credentials)?;
    check_credentials(user, ui).map_err(|e| e.unwrap_or_else(no_credentials))
}

/// `Err(None)`: no credentials at all.
fn check_credentials(user: &AuthInfo, ui: usize) -> Result<(), Option<VetError>> {
    let token = nonempty(&user.token);
    let cert = user
        .client_certificate_data
        .as_deref()
        .is_some_and(|c| !c.is_empty());
    let key = nonempty(&user.client_key_data);
    match (token, cert, key) {
        (_, true, false) => Err(Some(VetError::new(
            format!("users[{ui}].user.client-key-data"),
            "is missing: client-certificate-data needs it",
        ))),
        (_, false, true) => Err(Some(VetError::new(
            format!("users[{ui}].user.client-certificate-data"),
            "is missing: client-key-data needs it",
        ))),
        (true, _, _) | (_, true, true) => Ok(()),
        (false, false, false) => Err(None),
    }
}

/// The server must be `https://host[:port][/path]`. Checked in an order
/// that never echoes a URL carrying user information, a query or a fragment.
fn check_server(server: &str) -> Result<(), String> {
    let scheme_end = server.find("://");
    let after_scheme = scheme_end.map_or(server, |i| &server[i + 3..]);
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    if authority.contains('@') {
        return Err("must not carry user information (user:password@)".to_string());
    }
    if server.contains('?') || server.contains('#') {
        return Err("must not carry a query or fragment".to_string());
    }
    let scheme = scheme_end.map(|i| &server[..i]);
    match scheme {
        Some(s) if s.eq_ignore_ascii_case("https") => {}
        Some(s) if s.eq_ignore_ascii_case("http") => {
            return Err(format!(
                "{server:?} is plain http: dualmesh sends credentials only over https"
            ));
        }
        _ => return Err(format!("{server:?} is not an https:// URL")),
    }
    if authority.is_empty() || authority.starts_with(':') {
        return Err(format!("{server:?} names no host"));
    }
    Ok(())
}

/// Whether a secret string is set and not empty. The value itself is only
/// looked at, never copied.
fn nonempty(secret: &Option<SecretString>) -> bool {
    secret
        .as_ref()
        .is_some_and(|s| !s.expose_secret().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Values planted in the inputs; no refusal may repeat any of them.
    const TOKEN: &str = "s3cr3t-token-value";
    const CERT: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCmNlcnQtZGF0YS1wbGFudGVkCg==";
    const KEY: &str = "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCmtleS1kYXRhLXBsYW50ZWQK";
    const CA: &str = "Y2EtZGF0YS1wbGFudGVkLWluLXRoZS1rdWJlY29uZmln";
    const PLANTED: [&str; 9] = [
        TOKEN,
        CERT,
        KEY,
        CA,
        "exec-arg-s3cr3t",
        "provider-s3cr3t",
        "/var/run/secrets",
        "/etc/dualmesh",
        "admin:",
    ];

    const SERVER: &str = "https://[2001:db8::10]:6443";

    /// A kubeconfig for cluster `beta` with user `beta-admin`; `cluster_extra`
    /// and `user` are lines indented by four spaces.
    fn kubeconfig_with(server: &str, cluster_extra: &str, user: &str, current: &str) -> String {
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: beta
  cluster:
    server: {server}
    certificate-authority-data: {CA}
{cluster_extra}users:
- name: beta-admin
  user:
{user}contexts:
- name: beta
  context:
    cluster: beta
    user: beta-admin
{current}"
        )
    }

    fn kubeconfig(cluster_extra: &str, user: &str) -> String {
        kubeconfig_with(SERVER, cluster_extra, user, "current-context: beta\n")
    }

    fn token_user() -> String {
        format!("    token: {TOKEN}\n")
    }

    fn cert_user() -> String {
        format!("    client-certificate-data: {CERT}\n    client-key-data: {KEY}\n")
    }

    fn refusal(field: &str, message: &str) -> VetError {
        VetError {
            field: field.to_string(),
            message: message.to_string(),
        }
    }

    #[test]
    fn accepts_an_inline_token() {
        let config = vet(kubeconfig("", &token_user()).as_bytes()).unwrap();
        assert_eq!(config.current_context.as_deref(), Some("beta"));
        let cluster = config.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some(SERVER));
        assert_eq!(cluster.certificate_authority_data.as_deref(), Some(CA));
        let user = config.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(user.token.as_ref().unwrap().expose_secret(), TOKEN);
        assert!(user.client_certificate_data.is_none());
    }

    #[test]
    fn accepts_an_inline_client_certificate() {
        let config = vet(kubeconfig("", &cert_user()).as_bytes()).unwrap();
        let user = config.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(user.client_certificate_data.as_deref(), Some(CERT));
        assert_eq!(user.client_key_data.as_ref().unwrap().expose_secret(), KEY);
        assert!(user.token.is_none());
    }

    #[test]
    fn accepts_a_host_name_and_a_path_prefix() {
        let yaml = kubeconfig_with(
            "https://rancher.example.org/k8s/clusters/c-m-42",
            "",
            &token_user(),
            "current-context: beta\n",
        );
        assert!(vet(yaml.as_bytes()).is_ok());
    }

    /// Every refusal case: a name, the input, and the exact refusal.
    fn refusals() -> Vec<(&'static str, Vec<u8>, VetError)> {
        let file_why = "is a file path, which dualmesh does not read";
        let creds = "use token or client-certificate-data and client-key-data";
        let exec = "    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: /bin/sh
      args: [\"-c\", \"echo exec-arg-s3cr3t\"]
";
        vec![
            (
                "exec",
                kubeconfig("", exec).into_bytes(),
                refusal(
                    "users[0].user.exec",
                    &format!("runs a command, which dualmesh does not do: {creds}"),
                ),
            ),
            (
                "exec in a user the current context does not use",
                kubeconfig("", &format!("{}- name: other\n  user:\n{exec}", token_user()))
                    .into_bytes(),
                refusal(
                    "users[1].user.exec",
                    &format!("runs a command, which dualmesh does not do: {creds}"),
                ),
            ),
            (
                "auth-provider",
                kubeconfig(
                    "",
                    "    auth-provider:\n      name: oidc\n      config:\n        id-token: provider-s3cr3t\n",
                )
                .into_bytes(),
                refusal(
                    "users[0].user.auth-provider",
                    &format!("is a plugin, which dualmesh does not run: {creds}"),
                ),
            ),
            (
                "tokenFile, even next to an inline token",
                kubeconfig(
                    "",
                    &format!(
                        "{}    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token\n",
                        token_user()
                    ),
                )
                .into_bytes(),
                refusal(
                    "users[0].user.tokenFile",
                    &format!("{file_why}: use token"),
                ),
            ),
            (
                "client-certificate path",
                kubeconfig(
                    "",
                    &format!("    client-certificate: /etc/dualmesh/tls.crt\n    client-key-data: {KEY}\n"),
                )
                .into_bytes(),
                refusal(
                    "users[0].user.client-certificate",
                    &format!("{file_why}: use client-certificate-data"),
                ),
            ),
            (
                "client-key path",
                kubeconfig(
                    "",
                    &format!("    client-certificate-data: {CERT}\n    client-key: /etc/dualmesh/tls.key\n"),
                )
                .into_bytes(),
                refusal(
                    "users[0].user.client-key",
                    &format!("{file_why}: use client-key-data"),
                ),
            ),
            (
                "certificate-authority path",
                kubeconfig(
                    "    certificate-authority: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt\n",
                    &token_user(),
                )
                .into_bytes(),
                refusal(
                    "clusters[0].cluster.certificate-authority",
                    &format!("{file_why}: use certificate-authority-data"),
                ),
            ),
            (
                "basic authentication",
                kubeconfig("", &format!("    username: admin\n    password: {TOKEN}\n"))
                    .into_bytes(),
                refusal(
                    "users[0].user.username",
                    &format!("basic authentication is not accepted: {creds}"),
                ),
            ),
            (
                "no current-context",
                kubeconfig_with(SERVER, "", &token_user(), "").into_bytes(),
                refusal(
                    "current-context",
                    "is missing: name the context dualmesh should use",
                ),
            ),
            (
                "dangling current-context",
                kubeconfig_with(SERVER, "", &token_user(), "current-context: gamma\n").into_bytes(),
                refusal(
                    "current-context",
                    "names context \"gamma\", which is not in contexts",
                ),
            ),
            (
                "context naming a missing cluster",
                kubeconfig("", &token_user())
                    .replace("    cluster: beta\n", "    cluster: delta\n")
                    .into_bytes(),
                refusal(
                    "contexts[0].context.cluster",
                    "names cluster \"delta\", which is not in clusters",
                ),
            ),
            (
                "context naming a missing user",
                kubeconfig("", &token_user())
                    .replace("    user: beta-admin\n", "    user: nobody\n")
                    .into_bytes(),
                refusal(
                    "contexts[0].context.user",
                    "names user \"nobody\", which is not in users",
                ),
            ),
            (
                "no server",
                kubeconfig("", &token_user())
                    .replace(&format!("    server: {SERVER}\n"), "")
                    .into_bytes(),
                refusal("clusters[0].cluster.server", "is missing"),
            ),
            (
                "plain http",
                kubeconfig_with(
                    "http://[2001:db8::10]:8080",
                    "",
                    &token_user(),
                    "current-context: beta\n",
                )
                .into_bytes(),
                refusal(
                    "clusters[0].cluster.server",
                    "\"http://[2001:db8::10]:8080\" is plain http: dualmesh sends credentials only over https",
                ),
            ),
            (
                "user information in the server URL",
                kubeconfig_with(
                    &format!("https://admin:{TOKEN}@[2001:db8::10]:6443"),
                    "",
                    &token_user(),
                    "current-context: beta\n",
                )
                .into_bytes(),
                refusal(
                    "clusters[0].cluster.server",
                    "must not carry user information (user:password@)",
                ),
            ),
            (
                "query in the server URL",
                kubeconfig_with(
                    &format!("https://[2001:db8::10]:6443/?access_token={TOKEN}"),
                    "",
                    &token_user(),
                    "current-context: beta\n",
                )
                .into_bytes(),
                refusal(
                    "clusters[0].cluster.server",
                    "must not carry a query or fragment",
                ),
            ),
            (
                "insecure-skip-tls-verify",
                kubeconfig("    insecure-skip-tls-verify: true\n", &token_user()).into_bytes(),
                refusal(
                    "clusters[0].cluster.insecure-skip-tls-verify",
                    "is true: dualmesh sends credentials only over verified TLS; set certificate-authority-data instead",
                ),
            ),
            (
                "no credentials",
                kubeconfig("", "    as: someone\n").into_bytes(),
                refusal(
                    "users[0].user",
                    "has no credentials: dualmesh accepts token, or client-certificate-data with client-key-data",
                ),
            ),
            (
                "certificate without key",
                kubeconfig("", &format!("    client-certificate-data: {CERT}\n")).into_bytes(),
                refusal(
                    "users[0].user.client-key-data",
                    "is missing: client-certificate-data needs it",
                ),
            ),
            (
                "garbage",
                format!("token: {TOKEN}\n  - : [\n").into_bytes(),
                refusal("", "not valid kubeconfig YAML (line 2)"),
            ),
            (
                "YAML of the wrong shape",
                format!("apiVersion: v1\nusers: {TOKEN}\n").into_bytes(),
                refusal("", "not valid kubeconfig YAML (line 2)"),
            ),
            (
                "not UTF-8",
                [b"apiVersion: v1\n".as_slice(), b"\xff\xfe", TOKEN.as_bytes()].concat(),
                refusal("", "not UTF-8 text (invalid byte at offset 15)"),
            ),
            (
                "empty",
                Vec::new(),
                refusal(
                    "current-context",
                    "is missing: name the context dualmesh should use",
                ),
            ),
        ]
    }

    #[test]
    fn refusals_name_the_entry() {
        for (name, input, want) in refusals() {
            assert_eq!(vet(&input).unwrap_err(), want, "case {name}");
        }
    }

    #[test]
    fn refusals_never_repeat_credentials_or_paths() {
        for (name, input, _) in refusals() {
            let err = vet(&input).unwrap_err();
            for text in [err.to_string(), format!("{err:?}")] {
                for planted in PLANTED {
                    assert!(
                        !text.contains(planted),
                        "case {name}: {text:?} repeats {planted:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_parser_would_have_quoted_the_input() {
        // Why parse errors are reduced to a line number.
        let raw = Kubeconfig::from_yaml(&format!("apiVersion: v1\nusers: {TOKEN}\n")).unwrap_err();
        assert!(raw.to_string().contains(TOKEN), "{raw}");
    }

    #[test]
    fn display_prefixes_the_field() {
        assert_eq!(
            refusal("users[0].user.exec", "runs a command").to_string(),
            "users[0].user.exec: runs a command"
        );
        assert_eq!(refusal("", "not UTF-8 text").to_string(), "not UTF-8 text");
    }

    proptest! {
        #[test]
        fn random_input_never_panics_or_echoes(
            raw in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..256),
                "[ -~\n]{0,256}".prop_map(String::into_bytes),
            ],
        ) {
            if let Err(e) = vet(&raw) {
                let text = e.to_string();
                // Whole-document refusals say no more than a line number.
                if e.field.is_empty() {
                    prop_assert!(text.starts_with("not "), "{}", text);
                    prop_assert!(text.len() < 80, "{}", text);
                }
            }
        }
    }
}
