//! The kubeconfig file model: only the entries that are checked or used.

use super::*;

/// The kubeconfig as read: only the entries that are checked or used.
/// Several YAML documents merge as kubectl merges files: the first to set a
/// value or a name wins.
#[derive(Default, Deserialize)]
pub(super) struct File {
    pub(super) kind: Option<String>,
    #[serde(rename = "apiVersion")]
    pub(super) api_version: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) clusters: Vec<NamedCluster>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) users: Vec<NamedUser>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) contexts: Vec<NamedContext>,
    #[serde(rename = "current-context")]
    pub(super) current_context: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct NamedCluster {
    pub(super) name: String,
    pub(super) cluster: Option<Cluster>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct Cluster {
    pub(super) server: Option<String>,
    pub(super) insecure_skip_tls_verify: Option<bool>,
    pub(super) certificate_authority: Option<String>,
    pub(super) certificate_authority_data: Option<String>,
    pub(super) proxy_url: Option<String>,
    pub(super) tls_server_name: Option<String>,
    pub(super) disable_compression: Option<bool>,
}

#[derive(Deserialize)]
pub(super) struct NamedUser {
    pub(super) name: String,
    pub(super) user: Option<User>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct User {
    pub(super) username: Option<String>,
    #[serde(default, deserialize_with = "secret")]
    pub(super) password: Option<SecretString>,
    #[serde(default, deserialize_with = "secret")]
    pub(super) token: Option<SecretString>,
    #[serde(rename = "tokenFile")]
    pub(super) token_file: Option<String>,
    pub(super) client_certificate: Option<String>,
    pub(super) client_certificate_data: Option<String>,
    pub(super) client_key: Option<String>,
    #[serde(default, deserialize_with = "secret")]
    pub(super) client_key_data: Option<SecretString>,
    #[serde(rename = "as")]
    pub(super) impersonate: Option<String>,
    #[serde(rename = "as-uid")]
    pub(super) impersonate_uid: Option<String>,
    #[serde(rename = "as-groups")]
    pub(super) impersonate_groups: Option<Vec<String>>,
    // Only whether they are there matters: both are refused.
    pub(super) auth_provider: Option<serde::de::IgnoredAny>,
    pub(super) exec: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
pub(super) struct NamedContext {
    pub(super) name: String,
    pub(super) context: Option<Context>,
}

#[derive(Deserialize)]
pub(super) struct Context {
    pub(super) cluster: String,
    pub(super) user: Option<String>,
    pub(super) namespace: Option<String>,
}

/// A list given as `null` reads as empty.
pub(super) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A credential goes straight into a [`SecretString`].
pub(super) fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(SecretString::from))
}

impl File {
    /// kubectl's merge of several files (documents here): the first to set a
    /// value or a name wins; kind and apiVersion must agree.
    pub(super) fn merge(mut self, next: File) -> Result<File, VetError> {
        let disagree = |what: &str| {
            VetError::new(
                "",
                format!("not a valid kubeconfig: its YAML documents disagree on {what}"),
            )
        };
        if self.kind.is_some() && next.kind.is_some() && self.kind != next.kind {
            return Err(disagree("kind"));
        }
        if self.api_version.is_some()
            && next.api_version.is_some()
            && self.api_version != next.api_version
        {
            return Err(disagree("apiVersion"));
        }
        self.kind = self.kind.or(next.kind);
        self.api_version = self.api_version.or(next.api_version);
        self.current_context = self.current_context.or(next.current_context);
        for c in next.clusters {
            if !self.clusters.iter().any(|x| x.name == c.name) {
                self.clusters.push(c);
            }
        }
        for u in next.users {
            if !self.users.iter().any(|x| x.name == u.name) {
                self.users.push(u);
            }
        }
        for c in next.contexts {
            if !self.contexts.iter().any(|x| x.name == c.name) {
                self.contexts.push(c);
            }
        }
        Ok(self)
    }
}
