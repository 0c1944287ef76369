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
//! Parsed into dualmesh's own types (only the entries it checks or hands
//! on; anything else in the file is ignored), and what passes comes back as
//! a [`Vetted`] kubeconfig: the current context's server, CA, credentials
//! and options, nothing else. The controller builds the client from that
//! alone (never from the raw bytes again), so what connects is what was
//! checked.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

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

/// A member's kubeconfig that passed [`vet`]: the current context, its
/// cluster and its user, as far as a client uses them.
#[derive(Clone, Debug)]
pub struct Vetted {
    /// The current context's name.
    pub context: String,
    /// `https://host[:port][/path]`, without user information, query or
    /// fragment.
    pub server: String,
    /// `certificate-authority-data` (base64 PEM), when set.
    pub certificate_authority_data: Option<String>,
    /// `tls-server-name`, when set.
    pub tls_server_name: Option<String>,
    /// `proxy-url`, when set.
    pub proxy_url: Option<String>,
    /// `disable-compression`, when set.
    pub disable_compression: Option<bool>,
    /// The context's `namespace`, when set.
    pub namespace: Option<String>,
    /// The user's inline credentials: at least a token, or a certificate
    /// with its key.
    pub credentials: Credentials,
    /// The user's `as`, `as-uid` and `as-groups` (impersonation), when set.
    pub impersonate: Option<String>,
    pub impersonate_uid: Option<String>,
    pub impersonate_groups: Option<Vec<String>>,
}

/// Inline credentials. [`vet`] returns only non-empty ones, the
/// certificate always with its key, and at least one of the two.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// `token`.
    pub token: Option<SecretString>,
    /// `client-certificate-data` (base64 PEM) and `client-key-data`.
    pub client_certificate: Option<(String, SecretString)>,
}

/// Parses and checks a member's kubeconfig (the bytes of its Secret key);
/// returns what a client needs only when it uses inline credentials over
/// verified https. See the module documentation for the rules.
pub fn vet(raw: &[u8]) -> Result<Vetted, VetError> {
    let text = std::str::from_utf8(raw).map_err(|e| {
        VetError::new(
            "",
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    let documents: Vec<File> = serde_saphyr::from_multiple(text).map_err(parse_error)?;
    let config = documents
        .into_iter()
        .try_fold(File::default(), File::merge)?;
    refuse_indirections(&config)?;
    check_current(&config)
}

/// The parser's message may quote the input, so only its line is kept.
fn parse_error(e: serde_saphyr::Error) -> VetError {
    let message = match e.location().map(|l| l.line()) {
        Some(line) if line > 0 => format!("not valid kubeconfig YAML (line {line})"),
        _ => "not valid kubeconfig YAML".to_string(),
    };
    VetError::new("", message)
}

/// Entries that make a client read files or run commands, or that carry
/// basic-auth credentials: refused wherever they appear.
fn refuse_indirections(config: &File) -> Result<(), VetError> {
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
    for (i, named) in config.users.iter().enumerate() {
        let Some(user) = &named.user else {
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
fn check_current(config: &File) -> Result<Vetted, VetError> {
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
        .users
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
    let user = named_user.user.as_ref().ok_or_else(no_credentials)?;
    let credentials = check_credentials(user, ui).map_err(|e| e.unwrap_or_else(no_credentials))?;
    Ok(Vetted {
        context: current.to_string(),
        server: server.to_string(),
        certificate_authority_data: cluster.certificate_authority_data.clone(),
        tls_server_name: cluster.tls_server_name.clone(),
        proxy_url: cluster.proxy_url.clone(),
        disable_compression: cluster.disable_compression,
        namespace: context.namespace.clone(),
        credentials,
        impersonate: user.impersonate.clone(),
        impersonate_uid: user.impersonate_uid.clone(),
        impersonate_groups: user.impersonate_groups.clone(),
    })
}

/// The non-empty inline credentials; `Err(None)`: none at all.
fn check_credentials(user: &User, ui: usize) -> Result<Credentials, Option<VetError>> {
    let token = nonempty(&user.token);
    let cert = user
        .client_certificate_data
        .as_deref()
        .is_some_and(|c| !c.is_empty());
    let key = nonempty(&user.client_key_data);
    let credentials = || Credentials {
        token: user.token.clone().filter(|_| token),
        client_certificate: user
            .client_certificate_data
            .clone()
            .zip(user.client_key_data.clone())
            .filter(|_| cert && key),
    };
    match (token, cert, key) {
        (_, true, false) => Err(Some(VetError::new(
            format!("users[{ui}].user.client-key-data"),
            "is missing: client-certificate-data needs it",
        ))),
        (_, false, true) => Err(Some(VetError::new(
            format!("users[{ui}].user.client-certificate-data"),
            "is missing: client-key-data needs it",
        ))),
        (true, _, _) | (_, true, true) => Ok(credentials()),
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

mod file;
use file::*;

#[cfg(test)]
mod tests;
