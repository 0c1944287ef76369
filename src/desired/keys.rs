//! Names dualmesh derives: the `namespace/name` key of an object (in status,
//! annotations, logs and metrics) and the names of what it publishes.

/// `namespace/name`: the one way dualmesh spells an object's key.
pub fn object_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The namespace and name of a `namespace/name` key; None unless both
/// parts are present and the name has no further `/`.
pub fn parse_key(key: &str) -> Option<(&str, &str)> {
    let (namespace, name) = key.split_once('/')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains('/')).then_some((namespace, name))
}

/// The ConfigMap holding MeshCluster `meshcluster`'s rendered IstioOperator.
pub fn istio_operator_config_map(meshcluster: &str) -> String {
    format!("{meshcluster}-istiooperator")
}

/// The ConfigMap holding a MeshCluster's Helm values files (`installWith: Helm`).
pub fn helm_values_config_map(meshcluster: &str) -> String {
    format!("{meshcluster}-helm-values")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_malformed_ones_are_refused() {
        assert_eq!(
            object_key("dualmesh-system", "alpha"),
            "dualmesh-system/alpha"
        );
        assert_eq!(
            parse_key("dualmesh-system/alpha"),
            Some(("dualmesh-system", "alpha"))
        );
        let refused: Vec<Option<(&str, &str)>> = ["alpha", "/alpha", "ns/", "ns/a/b", ""]
            .into_iter()
            .map(parse_key)
            .collect();
        assert_eq!(refused, vec![None; 5]);
    }

    #[test]
    fn the_config_map_is_named_after_the_meshcluster() {
        assert_eq!(istio_operator_config_map("alpha"), "alpha-istiooperator");
    }
}
