//! Condition types and reasons, as named constants so code, tests and docs
//! (docs/conditions.md) agree on every spelling.

/// Everything below is True.
pub const READY: &str = "Ready";
/// The spec passed the checks the CRD schema cannot do.
pub const VALID: &str = "Valid";
/// The target cluster answers.
pub const CLUSTER_REACHABLE: &str = "ClusterReachable";
/// The rendered IstioOperator is published in the target cluster.
pub const ISTIO_CONFIG_APPLIED: &str = "IstioConfigApplied";
/// The gateway Service's externalIPs match its nodes' addresses.
pub const GATEWAY_ADDRESSES_READY: &str = "GatewayAddressesReady";
/// The trust secrets are copied into the member cluster.
pub const SECRETS_SYNCED: &str = "SecretsSynced";
/// The cluster's `cacerts` holds an intermediate CA of the mesh root
/// (`spec.trust`; see docs/federation.md).
pub const TRUST_DISTRIBUTED: &str = "TrustDistributed";
/// The `meshNetworks` key of the cluster's Istio ConfigMap lists every
/// network of the mesh with the gateway addresses published there
/// (`spec.ingressGateway.publishAddressesTo`); absent when no MeshCluster
/// of the mesh publishes there.
pub const MESH_NETWORKS_PUBLISHED: &str = "MeshNetworksPublished";
/// The cluster holds the remote secrets of the mesh's other clusters and
/// offers its own (`spec.remoteSecrets`); absent without it.
pub const REMOTE_SECRETS_SYNCED: &str = "RemoteSecretsSynced";
/// The `cross-network-gateway` Gateway (port 15443, AUTO_PASSTHROUGH) is
/// applied for the cluster's gateway; with `spec.remoteSecrets` only.
pub const CROSS_NETWORK_GATEWAY_APPLIED: &str = "CrossNetworkGatewayApplied";
/// The target cluster's ServiceCIDRs and node podCIDRs match the policy's
/// address plan. Informs only: it never blocks publishing and is not part
/// of `Ready`.
pub const CLUSTER_MATCHES_POLICY: &str = "ClusterMatchesPolicy";

/// `installWith: Sail`: Sail Operator's CRDs are installed in the target
/// cluster and Sail reports the objects dualmesh applied Ready. Informs
/// only (Istio's own rollout is Sail's): not part of `Ready`; absent for
/// the other install paths.
pub const SAIL_READY: &str = "SailReady";

/// Conditions that inform and do not count towards `Ready`.
pub const INFORMATIVE: [&str; 2] = [CLUSTER_MATCHES_POLICY, SAIL_READY];

/// Reasons, one per outcome.
pub mod reason {
    pub const VALID: &str = "Valid";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const POLICY_NOT_FOUND: &str = "PolicyNotFound";
    pub const POLICY_INVALID: &str = "PolicyInvalid";

    pub const REACHABLE: &str = "Reachable";
    pub const UNREACHABLE: &str = "Unreachable";
    pub const KUBECONFIG_MISSING: &str = "KubeconfigMissing";
    pub const KUBECONFIG_REFUSED: &str = "KubeconfigRefused";

    pub const CONFIG_MAP_AND_ISTIO_OPERATOR: &str = "ConfigMapAndIstioOperatorApplied";
    pub const CONFIG_MAP_ONLY: &str = "ConfigMapApplied";
    pub const APPLY_FAILED: &str = "ApplyFailed";

    pub const ADDRESSES_PUBLISHED: &str = "AddressesPublished";
    pub const NOT_MANAGED: &str = "NotManaged";
    pub const NO_GATEWAY_PODS: &str = "NoGatewayPods";
    pub const NO_ADDRESS_OF_FAMILY: &str = "NoAddressOfFamily";
    pub const EXTERNAL_IPS_DENIED: &str = "ExternalIPsDenied";
    pub const SERVICE_MISSING: &str = "ServiceMissing";

    pub const SYNCED: &str = "Synced";
    pub const NOTHING_TO_SYNC: &str = "NothingToSync";
    pub const SOURCE_MISSING: &str = "SourceMissing";
    pub const SYNC_FAILED: &str = "SyncFailed";
    /// The content-hash key Secret exists but holds no usable key.
    pub const HASH_KEY_UNUSABLE: &str = "HashKeyUnusable";

    /// TrustDistributed True: `cacerts` holds a current intermediate.
    pub const DISTRIBUTED: &str = "Distributed";
    /// TrustDistributed True: `spec.trust` is absent (shown only after it was set).
    pub const TRUST_NOT_REQUESTED: &str = "NotRequested";
    /// TrustDistributed False: the named root CA Secret is absent.
    pub const ROOT_CA_MISSING: &str = "RootCAMissing";
    /// TrustDistributed False: the root CA Secret fails a check.
    pub const ROOT_CA_INVALID: &str = "RootCAInvalid";
    /// TrustDistributed False: MeshClusters of one meshID name different roots.
    pub const ROOT_CA_CONFLICT: &str = "RootCAConflict";
    /// TrustDistributed False: a `cacerts` dualmesh did not write is there.
    pub const CACERTS_NOT_MANAGED: &str = "CacertsNotManaged";
    /// TrustDistributed False: dualmesh's `cacerts` holds no readable intermediate.
    pub const CACERTS_UNREADABLE: &str = "CacertsUnreadable";
    /// TrustDistributed True: a root rotation is under way: `root-cert.pem`
    /// trusts the old and the new root, the old intermediate signs.
    pub const ROTATION_BOTH_ROOTS_TRUSTED: &str = "RotationBothRootsTrusted";
    /// TrustDistributed True: a root rotation is under way: the
    /// intermediate is from the new root, the old root is still trusted.
    pub const ROTATION_INTERMEDIATE_REISSUED: &str = "RotationIntermediateReissued";

    /// MeshNetworksPublished True: the key lists the mesh's networks.
    pub const MESH_NETWORKS_WRITTEN: &str = "MeshNetworksWritten";
    /// MeshNetworksPublished False: Istio's ConfigMap is not there yet.
    pub const ISTIO_CONFIG_MAP_MISSING: &str = "IstioConfigMapMissing";

    /// CrossNetworkGatewayApplied True: the Gateway is current.
    pub const GATEWAY_APPLIED: &str = "GatewayApplied";
    /// CrossNetworkGatewayApplied False: networking.istio.io is not served.
    pub const ISTIO_CRDS_MISSING: &str = "IstioCRDsMissing";
    /// RemoteSecretsSynced False: Istio's reader ServiceAccount is not there.
    pub const READER_SERVICE_ACCOUNT_MISSING: &str = "ReaderServiceAccountMissing";
    /// RemoteSecretsSynced False: this cluster's reader token is not filled in.
    pub const READER_TOKEN_PENDING: &str = "ReaderTokenPending";
    /// RemoteSecretsSynced False: a peer has not offered its credentials yet.
    pub const PEER_CREDENTIALS_PENDING: &str = "PeerCredentialsPending";
    /// RemoteSecretsSynced False: a remote secret of a peer's name is not dualmesh's.
    pub const REMOTE_SECRET_NOT_MANAGED: &str = "RemoteSecretNotManaged";

    /// ClusterMatchesPolicy True: no check of the address plan fails.
    pub const CLUSTER_MATCHES: &str = "ClusterMatches";
    /// ClusterMatchesPolicy False: a ServiceCIDR check fails.
    pub const SERVICE_CIDR_MISMATCH: &str = "ServiceCIDRMismatch";
    /// ClusterMatchesPolicy False: a node podCIDR check fails.
    pub const POD_CIDR_MISMATCH: &str = "PodCIDRMismatch";

    /// SailReady True: Sail reports every object dualmesh applied Ready.
    pub const SAIL_OBJECTS_READY: &str = "SailObjectsReady";
    /// SailReady False: a sailoperator.io CRD is not installed.
    pub const SAIL_NOT_INSTALLED: &str = "SailNotInstalled";
    /// SailReady False: Sail has not reported on the current generation.
    pub const SAIL_PENDING: &str = "SailPending";
    /// SailReady False: Sail reports an object not Ready.
    pub const SAIL_NOT_READY: &str = "SailNotReady";

    pub const READY: &str = "Ready";
    pub const NOT_READY: &str = "NotReady";
    pub const PROGRESSING: &str = "Progressing";
}
