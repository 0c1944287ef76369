//! The generated world: deterministic addresses, and the Nodes, Pods, gateways and MeshClusters the bench made.

use super::*;

/// splitmix64: a fixed seed makes two runs make the same changes, without a
/// dependency for it.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A node's addresses, numbered: every change takes a fresh number, so an
/// address change is always a real change.
pub(crate) fn node_addresses(seq: u32) -> (Ipv6Addr, Ipv4Addr) {
    let v6 = Ipv6Addr::new(
        0x2001,
        0xdb8,
        0x5ca1,
        0,
        0,
        0,
        (seq >> 16) as u16,
        seq as u16,
    );
    // 198.18.0.0/15 holds 131,072 addresses; a default run uses about 12,000.
    let v4 = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (seq % 131_072));
    (v6, v4)
}

/// A unique pod IP (the operator does not read it; the API server wants one).
pub(crate) fn pod_ip(seq: u64) -> String {
    Ipv6Addr::new(
        0xfd00,
        0x10,
        0x244,
        (seq >> 32) as u16,
        0,
        0,
        (seq >> 16) as u16,
        seq as u16,
    )
    .to_string()
}

#[derive(Clone, Debug)]
pub(crate) struct PodRef {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) node: String,
}

/// One MeshCluster's gateway as this program wrote it.
#[derive(Clone, Debug)]
pub(crate) struct Gateway {
    pub(crate) meshcluster: String,
    pub(crate) namespace: String,
    /// (Pod name, node name); every one Running and Ready.
    pub(crate) pods: Vec<(String, String)>,
}

/// Everything this program wrote, to compute the expected externalIPs
/// without asking the operator's code.
pub(crate) struct World {
    /// Node name -> address number.
    pub(crate) nodes: HashMap<String, u32>,
    pub(crate) node_names: Vec<String>,
    pub(crate) gateways: Vec<Gateway>,
    pub(crate) other_pods: Vec<PodRef>,
    pub(crate) next_address: u32,
    pub(crate) next_pod: u64,
    pub(crate) next_node: u64,
    pub(crate) node_images: usize,
    pub(crate) rng: Rng,
}

impl World {
    pub(crate) fn new(seed: u64, node_images: usize) -> Self {
        World {
            nodes: HashMap::new(),
            node_names: Vec::new(),
            gateways: Vec::new(),
            other_pods: Vec::new(),
            next_address: 0,
            next_pod: 0,
            next_node: 0,
            node_images,
            rng: Rng(seed),
        }
    }

    pub(crate) fn address_number(&mut self) -> u32 {
        self.next_address += 1;
        self.next_address
    }

    pub(crate) fn pod_number(&mut self) -> u64 {
        self.next_pod += 1;
        self.next_pod
    }

    pub(crate) fn random_node(&mut self) -> String {
        let i = self.rng.below(self.node_names.len());
        self.node_names[i].clone()
    }

    pub(crate) fn gateway_nodes(&self) -> HashSet<String> {
        self.gateways
            .iter()
            .flat_map(|g| g.pods.iter().map(|(_, n)| n.clone()))
            .collect()
    }

    /// A node without a gateway Pod (there are thousands; a few tries do).
    pub(crate) fn random_plain_node(&mut self) -> String {
        let busy = self.gateway_nodes();
        loop {
            let n = self.random_node();
            if !busy.contains(&n) {
                return n;
            }
        }
    }

    /// What `spec.externalIPs` of gateway `k` must be: the IPv6 addresses of
    /// its Pods' nodes ascending, then the IPv4 ones (the policy's order).
    pub(crate) fn expected(&self, k: usize) -> Vec<String> {
        let mut v6 = BTreeSet::new();
        let mut v4 = BTreeSet::new();
        for (_, node) in &self.gateways[k].pods {
            if let Some(seq) = self.nodes.get(node) {
                let (a, b) = node_addresses(*seq);
                v6.insert(a);
                v4.insert(b);
            }
        }
        v6.iter()
            .map(ToString::to_string)
            .chain(v4.iter().map(ToString::to_string))
            .collect()
    }
}
