//! `dualmesh render`: read MeshCluster and DualStackPolicy YAML from files or
//! folders and render each MeshCluster's install path offline (its
//! `spec.istio.installWith`, or the one asked for): an IstioOperator, Sail's
//! objects, or one Helm values file per Istio chart.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::api::{DualStackPolicy, InstallWith, MeshCluster};
use crate::desired::{install, istio_operator, validate};

/// Why a render failed: the file, the object and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: document {index}: {message}")]
    Parse {
        path: PathBuf,
        index: usize,
        message: String,
    },
    #[error("{path}: {kind} {name}: {problems}")]
    Invalid {
        path: PathBuf,
        kind: &'static str,
        name: String,
        problems: String,
    },
    #[error(
        "{path}: MeshCluster {name}: spec.dualStackPolicyRef.name: DualStackPolicy {policy:?} is not in the input"
    )]
    MissingPolicy {
        path: PathBuf,
        name: String,
        policy: String,
    },
    #[error("--install-with {value:?}: use IstioOperator, Sail or Helm")]
    UnknownInstall { value: String },
    #[error("no MeshCluster in the input")]
    NothingToRender,
}

/// Every `.yaml`/`.yml` file under the given files and folders, sorted.
fn files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, RenderError> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let entries = std::fs::read_dir(input).map_err(|source| RenderError::Read {
                path: input.clone(),
                source,
            })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(input.clone());
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct TypeMeta {
    #[serde(default)]
    kind: String,
}

/// Renders every MeshCluster in `inputs`, in (file, document) order, as one
/// YAML stream: the install path `install_with` names (`IstioOperator`,
/// `Sail`, `Helm`), or each MeshCluster's own when None.
pub fn render(inputs: &[PathBuf], install_with: Option<&str>) -> Result<String, RenderError> {
    let forced: Option<InstallWith> = install_with
        .map(|s| {
            serde_json::from_value(serde_json::json!(s)).map_err(|_| RenderError::UnknownInstall {
                value: s.to_string(),
            })
        })
        .transpose()?;
    let mut policies: BTreeMap<String, (PathBuf, DualStackPolicy)> = BTreeMap::new();
    let mut clusters: Vec<(PathBuf, MeshCluster)> = Vec::new();
    for path in files(inputs)? {
        let text = std::fs::read_to_string(&path).map_err(|source| RenderError::Read {
            path: path.clone(),
            source,
        })?;
        // Null documents (an empty one between two `---`) are skipped and
        // not counted: `index` numbers the objects of the file.
        let mut reader = std::io::Cursor::new(text.as_bytes());
        for (index, doc) in serde_saphyr::read::<_, serde_json::Value>(&mut reader).enumerate() {
            let parse_err = |message: String| RenderError::Parse {
                path: path.clone(),
                index: index + 1,
                message,
            };
            let value = doc.map_err(|e| parse_err(e.to_string()))?;
            let meta: TypeMeta =
                serde_json::from_value(value.clone()).map_err(|e| parse_err(e.to_string()))?;
            match meta.kind.as_str() {
                "DualStackPolicy" => {
                    let p: DualStackPolicy =
                        serde_json::from_value(value).map_err(|e| parse_err(e.to_string()))?;
                    let name = p.metadata.name.clone().unwrap_or_default();
                    policies.insert(name, (path.clone(), p));
                }
                "MeshCluster" => {
                    let c: MeshCluster =
                        serde_json::from_value(value).map_err(|e| parse_err(e.to_string()))?;
                    clusters.push((path.clone(), c));
                }
                _ => {} // Other objects (Secrets, Namespaces) may share the files.
            }
        }
    }
    if clusters.is_empty() {
        return Err(RenderError::NothingToRender);
    }
    let mut out = String::new();
    for (path, mc) in &clusters {
        let name = mc.metadata.name.clone().unwrap_or_default();
        let mut spec = mc.spec.clone();
        if let Some(forced) = forced {
            spec.istio.install_with = forced;
        }
        let valid = validate::validate_mesh_cluster(&spec).map_err(|p| RenderError::Invalid {
            path: path.clone(),
            kind: "MeshCluster",
            name: name.clone(),
            problems: validate::summarize(&p),
        })?;
        let policy_name = &mc.spec.dual_stack_policy_ref.name;
        let (ppath, policy) =
            policies
                .get(policy_name)
                .ok_or_else(|| RenderError::MissingPolicy {
                    path: path.clone(),
                    name: name.clone(),
                    policy: policy_name.clone(),
                })?;
        let vp = validate::validate_policy(&policy.spec).map_err(|p| RenderError::Invalid {
            path: ppath.clone(),
            kind: "DualStackPolicy",
            name: policy_name.clone(),
            problems: validate::summarize(&p),
        })?;
        let ns = mc.metadata.namespace.as_deref().unwrap_or("default");
        let header = format!("Rendered by dualmesh for MeshCluster {ns}/{name}");
        match spec.istio.install_with {
            InstallWith::IstioOperator => {
                out.push_str(&format!("---\n# {header}\n"));
                out.push_str(&istio_operator::build(&valid, &vp).yaml);
            }
            InstallWith::Helm => out.push_str(&install::helm::build(&valid, &vp).stream(&header)),
            InstallWith::Sail => out.push_str(&install::sail::build(&valid, &vp).stream(&header)),
        }
    }
    Ok(out)
}
