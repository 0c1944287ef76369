//! Istio's own Helm charts, from the Go module cache: the istio.io/istio
//! version tools/istioctl pins (filled when `make tools` built istioctl).

use std::path::PathBuf;
use std::process::Command;

use testplane::ControlPlane;

use super::{ISTIO_NS, repo};

/// `manifests/charts` of the istio.io/istio version tools/istioctl pins,
/// in the Go module cache (filled when istioctl was built).
pub fn charts() -> PathBuf {
    let gomod = std::fs::read_to_string(repo().join("tools/istioctl/go.mod")).unwrap();
    let version = gomod
        .lines()
        .find_map(|l| l.trim().strip_prefix("istio.io/istio "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("tools/istioctl/go.mod requires istio.io/istio");
    let cache = Command::new("go")
        .args(["env", "GOMODCACHE"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join("go/pkg/mod"));
    let dir = cache.join(format!("istio.io/istio@{version}/manifests/charts"));
    assert!(
        dir.join("istio-control/istio-discovery/Chart.yaml")
            .exists(),
        "{} is missing: build istioctl (make tools) to fill the module cache",
        dir.display()
    );
    dir
}

/// The folder of each chart dualmesh writes values for.
pub fn chart_dir(chart: &str) -> &'static str {
    match chart {
        "base" => "base",
        "istiod" => "istio-control/istio-discovery",
        "cni" => "istio-cni",
        "gateway" => "gateway",
        "ztunnel" => "ztunnel",
        other => panic!("no chart {other}"),
    }
}

/// Installs the istiod chart's reader ClusterRole and binding (Istio's own
/// RBAC for `istio-reader-service-account`), rendered by the built helm.
pub fn install_istio_reader_rbac(plane: &ControlPlane) {
    let chart = charts().join("istio-control/istio-discovery");
    let out = Command::new(plane.tools_bin().join("helm"))
        .args(["template", "istiod"])
        .arg(&chart)
        .args([
            "--namespace",
            ISTIO_NS,
            "--show-only",
            "templates/reader-clusterrole.yaml",
            "--show-only",
            "templates/reader-clusterrolebinding.yaml",
        ])
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = plane.dir().join("istio-reader-rbac.yaml");
    std::fs::write(&file, &out.stdout).unwrap();
    testplane::workload::kubectl(plane, &["apply", "-f", file.to_str().unwrap()]);
}
