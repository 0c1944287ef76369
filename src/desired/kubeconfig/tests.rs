//! Tests of the kubeconfig vetting: every refusal exact, none repeating
//! what it refused.

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
    let v = vet(kubeconfig("", &token_user()).as_bytes()).unwrap();
    assert_eq!(v.context, "beta");
    assert_eq!(v.server, SERVER);
    assert_eq!(v.certificate_authority_data.as_deref(), Some(CA));
    assert_eq!(v.credentials.token.as_ref().unwrap().expose_secret(), TOKEN);
    assert!(v.credentials.client_certificate.is_none());
    assert_eq!(
        (v.tls_server_name, v.proxy_url, v.namespace, v.impersonate),
        (None, None, None, None)
    );
}

#[test]
fn accepts_an_inline_client_certificate() {
    let v = vet(kubeconfig("", &cert_user()).as_bytes()).unwrap();
    let (cert, key) = v.credentials.client_certificate.as_ref().unwrap();
    assert_eq!(cert, CERT);
    assert_eq!(key.expose_secret(), KEY);
    assert!(v.credentials.token.is_none());
}

#[test]
fn hands_on_the_current_entries_options_only() {
    let yaml = kubeconfig(
        "    tls-server-name: beta.internal\n    proxy-url: http://[2001:db8::3128]:3128\n    disable-compression: true\n",
        &format!("{}    as: ops\n    as-groups: [mesh]\n", token_user()),
    )
    .replace(
        "    user: beta-admin\n",
        "    user: beta-admin\n    namespace: istio-system\n",
    );
    // A second document adds nothing to the current context.
    let yaml = format!(
        "{yaml}---\nclusters:\n- name: beta\n  cluster:\n    server: https://other.example\n"
    );
    let v = vet(yaml.as_bytes()).unwrap();
    assert_eq!(v.server, SERVER);
    assert_eq!(v.tls_server_name.as_deref(), Some("beta.internal"));
    assert_eq!(v.proxy_url.as_deref(), Some("http://[2001:db8::3128]:3128"));
    assert_eq!(v.disable_compression, Some(true));
    assert_eq!(v.namespace.as_deref(), Some("istio-system"));
    assert_eq!(v.impersonate.as_deref(), Some("ops"));
    assert_eq!(v.impersonate_groups, Some(vec!["mesh".to_string()]));
    // Debug shows no credential.
    let debug = format!("{v:?}");
    assert!(!debug.contains(TOKEN), "{debug}");
}

#[test]
fn documents_that_disagree_on_kind_are_refused() {
    let yaml = format!("{}---\nkind: Other\n", kubeconfig("", &token_user()));
    assert_eq!(
        vet(yaml.as_bytes()).unwrap_err(),
        refusal(
            "",
            "not a valid kubeconfig: its YAML documents disagree on kind"
        )
    );
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
    let raw = serde_saphyr::from_multiple::<File>(&format!("apiVersion: v1\nusers: {TOKEN}\n"))
        .err()
        .unwrap();
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
