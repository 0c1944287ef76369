//! The Kubernetes syntaxes of names, label keys and values, environment
//! variable names and Secret keys, as predicates.

/// A DNS-1123 label: at most 63 lowercase letters, digits and '-', not
/// starting or ending with '-'.
pub(super) fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain: DNS-1123 labels joined by '.', at most 253 characters.
pub(super) fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// A non-empty label value: at most 63 letters, digits, '-', '_' or '.',
/// starting and ending with a letter or digit. (Kubernetes also allows the
/// empty value; the fields that must name something do not.)
pub(super) fn is_label_value(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A label key: an optional prefix (a DNS-1123 subdomain) and '/', then a
/// name with the syntax of a non-empty label value, as Kubernetes'
/// `IsQualifiedName` checks it.
pub(super) fn is_label_key(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns1123_subdomain(prefix) && is_label_value(name),
        None => is_label_value(s),
    }
}

/// An environment variable name: letters, digits and '_', not starting with a digit.
pub(super) fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A key in a Secret's data: at most 253 letters, digits, '-', '.' or '_'.
pub(super) fn is_secret_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys_follow_kubernetes_qualified_names() {
        for good in [
            "app",
            "app.kubernetes.io/name",
            "istio.io/rev",
            "A_b-c.d",
            "x/y",
            &"a".repeat(63),
            &format!(
                "{}/n",
                [
                    "a".repeat(63),
                    "b".repeat(63),
                    "c".repeat(63),
                    "d".repeat(61)
                ]
                .join(".")
            ),
        ] {
            assert!(is_label_key(good), "{good:?} refused");
        }
        for bad in [
            "",
            "tier x",
            "app,tier",
            "a=b",
            "!app",
            "-app",
            "app-",
            "/app",
            "app/",
            "a/b/c",
            "Example.com/app",
            "a_b/app",
            &"a".repeat(64),
            &format!(
                "{}/n",
                [
                    "a".repeat(63),
                    "b".repeat(63),
                    "c".repeat(63),
                    "d".repeat(62)
                ]
                .join(".")
            ),
        ] {
            assert!(!is_label_key(bad), "{bad:?} accepted");
        }
    }
}
