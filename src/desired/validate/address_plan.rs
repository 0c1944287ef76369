//! The address plan of one family: CIDRs parsed and checked for family,
//! host bits and size, the node mask against the Pod CIDR, Calico's block
//! size; and the CIDR parsing the rest of the policy shares.

use ipnet::IpNet;

use super::Problem;
use crate::api::IpFamily;

/// The address plan of one family, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FamilyPlan {
    pub service_cidr: Option<IpNet>,
    pub pod_cidr: Option<IpNet>,
    pub node_cidr_mask_size: Option<u8>,
    pub block_size: Option<u8>,
}

pub(super) fn family_of(net: &IpNet) -> IpFamily {
    match net {
        IpNet::V4(_) => IpFamily::IPv4,
        IpNet::V6(_) => IpFamily::IPv6,
    }
}

pub(super) fn parse_cidr(
    field: &str,
    value: &str,
    family: Option<IpFamily>,
    out: &mut Vec<Problem>,
) -> Option<IpNet> {
    let Ok(net) = value.parse::<IpNet>() else {
        let example = match family {
            Some(IpFamily::IPv4) => "an IPv4 CIDR such as 10.96.0.0/16",
            Some(IpFamily::IPv6) => "an IPv6 CIDR such as fd00:10:96::/112",
            None => "a CIDR such as 2001:db8:1::/48 or 192.0.2.0/24",
        };
        out.push(Problem::new(
            field,
            format!("{value:?} is not a CIDR: must be {example}"),
        ));
        return None;
    };
    if let Some(want) = family
        && family_of(&net) != want
    {
        out.push(Problem::new(
            field,
            format!("{value} is not an {want} CIDR"),
        ));
        return None;
    }
    if net.trunc() != net {
        out.push(Problem::new(
            field,
            format!("{value} has host bits set: did you mean {}?", net.trunc()),
        ));
        return None;
    }
    Some(net)
}

pub(super) fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

pub(super) fn check_plan(
    family: IpFamily,
    base: &str,
    service: Option<&str>,
    pod: Option<&str>,
    node_mask: Option<i32>,
    block: Option<i32>,
    out: &mut Vec<Problem>,
) -> FamilyPlan {
    let bits: i32 = match family {
        IpFamily::IPv4 => 32,
        IpFamily::IPv6 => 128,
    };
    // kube-apiserver refuses service ranges with more than 20 host bits
    // (IPv6 /108, IPv4 /12); Calico's block sizes are 20..32 and 116..128.
    let (min_service, block_range) = match family {
        IpFamily::IPv4 => (12u8, 20..=32),
        IpFamily::IPv6 => (108u8, 116..=128),
    };
    let service_field = format!("{base}.serviceCIDR");
    let service = service.and_then(|s| parse_cidr(&service_field, s, Some(family), out));
    if let Some(s) = service
        && s.prefix_len() < min_service
    {
        out.push(Problem::new(
            &service_field,
            format!("{s} is too large: a {family} service CIDR must be /{min_service} or longer (kube-apiserver allows at most 20 host bits)"),
        ));
    }
    let pod_field = format!("{base}.podCIDR");
    let pod = pod.and_then(|s| parse_cidr(&pod_field, s, Some(family), out));
    if let (Some(s), Some(p)) = (service, pod)
        && overlaps(&s, &p)
    {
        out.push(Problem::new(
            &pod_field,
            format!("{p} overlaps {service_field} {s}"),
        ));
    }

    let mask_field = format!("{base}.nodeCIDRMaskSize");
    let node_mask = node_mask.and_then(|m| {
        if !(1..=bits).contains(&m) {
            out.push(Problem::new(
                &mask_field,
                format!("{m} is not a prefix length of {family} (1 to {bits})"),
            ));
            return None;
        }
        Some(m as u8)
    });
    if let (Some(p), Some(m)) = (pod, node_mask) {
        let pl = p.prefix_len();
        if m <= pl {
            out.push(Problem::new(
                &mask_field,
                format!("/{m} must be longer than {pod_field} {p} (each node gets a slice of the Pod CIDR)"),
            ));
        } else if m - pl > 16 {
            out.push(Problem::new(
                &mask_field,
                format!(
                    "/{m} is {} bits longer than {pod_field} {p}; kube-controller-manager allows at most 16 (use a Pod CIDR of /{} or longer)",
                    m - pl,
                    m - 16
                ),
            ));
        }
    }

    let block_field = format!("{base}.blockSize");
    let block = block.and_then(|b| {
        if !block_range.contains(&b) {
            out.push(Problem::new(
                &block_field,
                format!(
                    "{b} is outside Calico's {family} block sizes ({} to {})",
                    block_range.start(),
                    block_range.end()
                ),
            ));
            return None;
        }
        Some(b as u8)
    });
    if let (Some(p), Some(b)) = (pod, block)
        && b < p.prefix_len()
    {
        out.push(Problem::new(
            &block_field,
            format!(
                "/{b} blocks do not fit in {pod_field} {p}: the block size must be /{} or longer",
                p.prefix_len()
            ),
        ));
    }
    FamilyPlan {
        service_cidr: service,
        pod_cidr: pod,
        node_cidr_mask_size: node_mask,
        block_size: block,
    }
}
