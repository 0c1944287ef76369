//! The install path's own limits (`spec.istio.installWith`): the profiles
//! each path has, and the version form Sail Operator needs. The CRD's CEL
//! rules on `spec.istio` say the same at admission.

use super::Problem;
use crate::api::{InstallWith, IstioProfile, IstioSpec};

/// The profile a path is given, or None when the path has no such profile.
/// `Some("")`: the path's default (no profile value set).
///
/// Istio's charts ship `files/profile-<name>.yaml` for ambient, demo,
/// preview, remote and stable; no value means the default profile, and
/// `minimal` (istiod without gateways) is what the istiod chart installs
/// anyway; there is no `empty`. Sail's v1 `spec.profile` enum (ambient,
/// default, demo, empty, external, openshift, openshift-ambient, preview,
/// remote, stable) has no `minimal` either: Sail never installs gateways,
/// so it is Sail's `default`.
pub fn profile_for(install: InstallWith, profile: IstioProfile) -> Option<&'static str> {
    use IstioProfile::*;
    match (install, profile) {
        (InstallWith::IstioOperator, p) => Some(p.as_str()),
        (InstallWith::Helm, Default | Minimal) => Some(""),
        (InstallWith::Helm, Empty) => None,
        (InstallWith::Sail, Minimal) => Some("default"),
        (_, p) => Some(p.as_str()),
    }
}

/// `X.Y.Z`, the release form Sail's `spec.version` takes as `vX.Y.Z`.
pub fn is_release(tag: &str) -> bool {
    let parts: Vec<&str> = tag.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Adds the problems of `istio`'s install path to `out`.
pub fn check_install(istio: &IstioSpec, out: &mut Vec<Problem>) {
    if profile_for(istio.install_with, istio.profile).is_none() {
        let why = "Istio's Helm charts have no such profile (use default, minimal, demo, preview, remote or ambient)";
        out.push(Problem::new(
            "spec.istio.profile",
            format!(
                "{} with installWith {}: {why}",
                istio.profile.as_str(),
                istio.install_with.as_str()
            ),
        ));
    }
    if istio.install_with == InstallWith::Sail && !is_release(&istio.tag) {
        out.push(Problem::new(
            "spec.istio.tag",
            format!(
                "{:?} with installWith Sail: Sail Operator installs released versions only; use a release such as 1.28.0 (it becomes spec.version v1.28.0)",
                istio.tag
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn istio(install: InstallWith, profile: IstioProfile, tag: &str) -> IstioSpec {
        let yaml = include_str!("../../../examples/meshcluster-alpha.yaml");
        let mut spec = serde_saphyr::from_str::<crate::api::MeshCluster>(yaml)
            .unwrap()
            .spec
            .istio;
        spec.install_with = install;
        spec.profile = profile;
        spec.tag = tag.to_string();
        spec
    }

    fn problems(spec: &IstioSpec) -> Vec<String> {
        let mut out = Vec::new();
        check_install(spec, &mut out);
        out.iter().map(Problem::to_string).collect()
    }

    #[test]
    fn each_path_gets_a_profile_it_has() {
        use IstioProfile::*;
        assert_eq!(profile_for(InstallWith::Helm, Minimal), Some(""));
        assert_eq!(profile_for(InstallWith::Helm, Ambient), Some("ambient"));
        assert_eq!(profile_for(InstallWith::Sail, Minimal), Some("default"));
        assert_eq!(profile_for(InstallWith::Sail, Empty), Some("empty"));
        assert_eq!(
            profile_for(InstallWith::IstioOperator, Empty),
            Some("empty")
        );
        assert_eq!(profile_for(InstallWith::Helm, Empty), None);
        assert_eq!(profile_for(InstallWith::Sail, Remote), Some("remote"));
    }

    #[test]
    fn a_profile_the_path_lacks_and_an_unreleased_sail_version_name_their_fields() {
        assert_eq!(
            problems(&istio(InstallWith::Helm, IstioProfile::Empty, "1.28.0")),
            [
                "spec.istio.profile: empty with installWith Helm: Istio's Helm charts have no such profile (use default, minimal, demo, preview, remote or ambient)"
            ]
        );
        assert_eq!(
            problems(&istio(InstallWith::Sail, IstioProfile::Remote, "1.28-dev")),
            [
                "spec.istio.tag: \"1.28-dev\" with installWith Sail: Sail Operator installs released versions only; use a release such as 1.28.0 (it becomes spec.version v1.28.0)",
            ]
        );
        assert!(problems(&istio(InstallWith::Sail, IstioProfile::Ambient, "1.28.0")).is_empty());
        // IstioOperator takes any tag, as before.
        assert!(
            problems(&istio(
                InstallWith::IstioOperator,
                IstioProfile::Empty,
                "1.28-dev"
            ))
            .is_empty()
        );
    }

    #[test]
    fn releases_are_three_numbers() {
        for ok in ["1.28.0", "1.30.12"] {
            assert!(is_release(ok), "{ok}");
        }
        for bad in ["1.28", "v1.28.0", "1.28.0-distroless", "1..0", "1.28.0.1"] {
            assert!(!is_release(bad), "{bad}");
        }
    }
}
