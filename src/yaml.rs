//! YAML out: one place that fixes how dualmesh writes YAML (the CRDs in
//! crds/, the rendered IstioOperator, `dualmesh render`), so the output is
//! byte-stable and reads as Kubernetes YAML usually does.
//!
//! serde-saphyr is the YAML crate kube 5 uses. Its defaults differ from what
//! dualmesh wrote with serde_yaml in one way that matters: single-line
//! strings over 80 characters are folded (`>`) over several lines. Long CEL
//! rules and descriptions stay on one line here, as before.

use serde::Serialize;

/// `value` as YAML: two-space indent, list items at their key's indent,
/// multi-line strings as literal blocks, long single-line strings unfolded.
pub fn to_string<T: Serialize>(value: &T) -> String {
    let options = serde_saphyr::ser_options! {
        folded_wrap_chars: usize::MAX,
    };
    serde_saphyr::to_string_with_options(value, options)
        .expect("dualmesh's types serialize to YAML (string keys, no non-finite floats)")
}
