//! What a failed request may say in the management cluster's status and
//! Events. Pure.
//!
//! An API server's error body is text chosen by that server: a member's
//! admission webhook or policy can put anything in it (a marker, a URL,
//! whatever it read from our request), and whoever can read a MeshCluster
//! or its Events would read it. So a failed request is described by the
//! HTTP status code, the Kubernetes reason (only when it is one of the
//! reasons Kubernetes defines: a member can send any word there too) and a
//! short fixed message; never by the server's `message`.

/// The `reason` values of `metav1.StatusReason` (apimachinery
/// `pkg/apis/meta/v1/types.go`): the only ones repeated.
const KNOWN_REASONS: [&str; 18] = [
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "AlreadyExists",
    "Conflict",
    "Gone",
    "Invalid",
    "ServerTimeout",
    "StoreReadError",
    "Timeout",
    "TooManyRequests",
    "BadRequest",
    "MethodNotAllowed",
    "NotAcceptable",
    "RequestEntityTooLarge",
    "UnsupportedMediaType",
    "InternalError",
    "ServiceUnavailable",
];

/// A failed request, as much of it as may be shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure<'a> {
    /// The API server answered with an error status: its HTTP code and its
    /// `reason` (as sent; checked here).
    Status { code: u16, reason: &'a str },
    /// No answer: the connection, TLS or the request timed out.
    NoAnswer,
    /// An answer that was not a readable Kubernetes response.
    BadAnswer,
    /// Refused before it was sent: this replica's write fence is closed.
    Fenced,
    /// The request could not be built or sent for another local reason.
    NotSent,
}

/// The text for an error status answered by an API server: code, reason
/// when Kubernetes defines it, and a fixed explanation of the code.
pub fn api_error(code: u16, reason: &str) -> String {
    let why = match code {
        400 => "the request was refused as malformed",
        401 => "the credentials were not accepted",
        403 => "the request was refused by authorization or admission",
        404 => "the object or its API is not there",
        405 => "the API does not allow this request",
        409 => "the object changed meanwhile, or already exists",
        410 => "what was asked for has expired",
        413 => "the request was too large",
        415 | 406 => "the API did not accept the content type",
        422 => "the object was refused as invalid by validation or admission",
        429 => "the API server asked to slow down",
        500..=599 => "the API server failed to answer the request",
        _ => "the request failed",
    };
    if KNOWN_REASONS.contains(&reason) {
        format!("the API server answered {code} {reason}: {why}")
    } else {
        format!("the API server answered {code}: {why}")
    }
}

/// The text for any failed request.
pub fn failure(f: Failure<'_>) -> String {
    match f {
        Failure::Status { code, reason } => api_error(code, reason),
        Failure::NoAnswer => "no answer from the API server (connection, TLS or timeout)".into(),
        Failure::BadAnswer => "the API server's answer could not be read".into(),
        Failure::Fenced => "write refused: this replica's leader Lease may have expired".into(),
        Failure::NotSent => "the request could not be sent".into(),
    }
}

/// A server's `gitVersion` (`v1.34.1`, `v1.33.4+k3s1`, `v1.32.2-gke.1297002`)
/// as it may be shown: as sent when it looks like a version (a `v` or
/// digit, then at most 63 of `[0-9A-Za-z.+-]`), otherwise a fixed text.
pub fn server_version(v: &str) -> String {
    let looks_like_one = (1..=64).contains(&v.len())
        && v.starts_with(|c: char| c == 'v' || c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-'));
    if looks_like_one {
        v.to_string()
    } else {
        "a version dualmesh does not show".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_say_code_reason_and_a_fixed_explanation() {
        let cases = [
            (
                403,
                "Forbidden",
                "the API server answered 403 Forbidden: the request was refused by authorization or admission",
            ),
            (
                422,
                "Invalid",
                "the API server answered 422 Invalid: the object was refused as invalid by validation or admission",
            ),
            (
                409,
                "Conflict",
                "the API server answered 409 Conflict: the object changed meanwhile, or already exists",
            ),
            (
                401,
                "Unauthorized",
                "the API server answered 401 Unauthorized: the credentials were not accepted",
            ),
            (
                503,
                "ServiceUnavailable",
                "the API server answered 503 ServiceUnavailable: the API server failed to answer the request",
            ),
            (
                404,
                "",
                "the API server answered 404: the object or its API is not there",
            ),
            (
                418,
                "Teapot",
                "the API server answered 418: the request failed",
            ),
        ];
        for (code, reason, want) in cases {
            assert_eq!(api_error(code, reason), want, "{code} {reason}");
        }
    }

    #[test]
    fn a_reason_kubernetes_does_not_define_is_not_repeated() {
        let planted = "MARKER-7d1c see https://evil.example/";
        assert_eq!(
            api_error(403, planted),
            "the API server answered 403: the request was refused by authorization or admission"
        );
        // Case matters: "forbidden" is not a StatusReason.
        assert!(!api_error(403, "forbidden").contains("forbidden"));
    }

    #[test]
    fn versions_are_shown_only_when_they_look_like_one() {
        for v in ["v1.34.1", "v1.33.4+k3s1", "v1.32.2-gke.1297002", "1.30.0"] {
            assert_eq!(server_version(v), v);
        }
        let long = format!("v1.{}", "9".repeat(70));
        for v in [
            "",
            "MARKER see https://x",
            "v1.34 ; rm",
            "release-1.34",
            long.as_str(),
        ] {
            assert_eq!(
                server_version(v),
                "a version dualmesh does not show",
                "{v:?}"
            );
        }
    }

    #[test]
    fn failures_without_an_answer_have_fixed_texts() {
        assert_eq!(
            failure(Failure::NoAnswer),
            "no answer from the API server (connection, TLS or timeout)"
        );
        assert_eq!(
            failure(Failure::BadAnswer),
            "the API server's answer could not be read"
        );
        assert_eq!(
            failure(Failure::Fenced),
            "write refused: this replica's leader Lease may have expired"
        );
        assert_eq!(failure(Failure::NotSent), "the request could not be sent");
        assert_eq!(
            failure(Failure::Status {
                code: 429,
                reason: "TooManyRequests"
            }),
            "the API server answered 429 TooManyRequests: the API server asked to slow down"
        );
    }
}
