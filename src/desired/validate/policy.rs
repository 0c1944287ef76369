//! DualStackPolicy checks: families and family policy, the address plan of
//! each family (checked in [`super::address_plan`]), the NAT64 prefix and
//! which node addresses may be published.

use std::collections::BTreeMap;

use ipnet::{IpNet, Ipv6Net};

use super::Problem;
use super::address_plan::{FamilyPlan, check_plan, overlaps, parse_cidr};
use crate::api::{DualStackPolicySpec, IpFamily, IpFamilyPolicy, NodeAddressType};

/// Which node addresses may be published, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressRules {
    pub address_types: Vec<NodeAddressType>,
    pub allowed_cidrs: Vec<IpNet>,
    pub allow_unique_local: bool,
    pub allow_private_ipv4: bool,
}

/// A DualStackPolicy that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidPolicy {
    /// One or two distinct families, primary first.
    pub families: Vec<IpFamily>,
    pub family_policy: IpFamilyPolicy,
    pub plans: BTreeMap<IpFamily, FamilyPlan>,
    pub nat64_prefix: Option<Ipv6Net>,
    pub addresses: AddressRules,
}

impl ValidPolicy {
    /// Two families.
    pub fn is_dual_stack(&self) -> bool {
        self.families.len() == 2
    }

    /// `IPv6,IPv4`: the families in order, for status and printer columns.
    pub fn families_label(&self) -> String {
        self.families
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Checks a DualStackPolicy spec; every problem names its field.
pub fn validate_policy(spec: &DualStackPolicySpec) -> Result<ValidPolicy, Vec<Problem>> {
    let DualStackPolicySpec {
        ip_families,
        ip_family_policy,
        address_plan,
        nat64_prefix,
        gateway_addresses,
    } = spec;
    let mut out = Vec::new();

    let families = ip_families.clone();
    if families.is_empty() || families.len() > 2 {
        out.push(Problem::new(
            "spec.ipFamilies",
            "must list one or two families: [IPv6], [IPv6, IPv4] or [IPv4, IPv6]",
        ));
    } else if families.len() == 2 && families[0] == families[1] {
        out.push(Problem::new(
            "spec.ipFamilies",
            format!("{} is listed twice", families[0]),
        ));
    }
    match (ip_family_policy, families.len()) {
        (IpFamilyPolicy::SingleStack, n) if n != 1 => out.push(Problem::new(
            "spec.ipFamilyPolicy",
            "SingleStack takes exactly one entry in ipFamilies; use RequireDualStack or PreferDualStack for two",
        )),
        (IpFamilyPolicy::RequireDualStack, n) if n != 2 => out.push(Problem::new(
            "spec.ipFamilyPolicy",
            "RequireDualStack needs two entries in ipFamilies (IPv4 and IPv6)",
        )),
        _ => {}
    }

    let mut plans = BTreeMap::new();
    if let Some(plan) = address_plan {
        // The two slots differ only in their family, so they share one check.
        let slots = [
            (
                IpFamily::IPv4,
                plan.ipv4.as_ref().map(|p| {
                    (
                        p.service_cidr.as_deref(),
                        p.pod_cidr.as_deref(),
                        p.node_cidr_mask_size,
                        p.block_size,
                    )
                }),
            ),
            (
                IpFamily::IPv6,
                plan.ipv6.as_ref().map(|p| {
                    (
                        p.service_cidr.as_deref(),
                        p.pod_cidr.as_deref(),
                        p.node_cidr_mask_size,
                        p.block_size,
                    )
                }),
            ),
        ];
        for (family, fields) in slots {
            let Some((service, pod, mask, block)) = fields else {
                continue;
            };
            let base = format!("spec.addressPlan.{}", family.as_str().to_lowercase());
            let p = check_plan(family, &base, service, pod, mask, block, &mut out);
            if !families.contains(&family) {
                out.push(Problem::new(
                    base,
                    format!("is set but {family} is not in ipFamilies"),
                ));
            }
            plans.insert(family, p);
        }
    }

    let nat64 = nat64_prefix.as_deref().and_then(|raw| {
        let field = "spec.nat64Prefix";
        let net = parse_cidr(field, raw, Some(IpFamily::IPv6), &mut out)?;
        if families != [IpFamily::IPv6] {
            out.push(Problem::new(
                field,
                "applies to IPv6-only policies (ipFamilies: [IPv6]); remove it for dual-stack",
            ));
        }
        if ![32, 40, 48, 56, 64, 96].contains(&net.prefix_len()) {
            out.push(Problem::new(
                field,
                "a NAT64 prefix (RFC 6052) is /32, /40, /48, /56, /64 or /96",
            ));
            return None;
        }
        for (fam, plan) in &plans {
            for (what, cidr) in [
                ("serviceCIDR", plan.service_cidr),
                ("podCIDR", plan.pod_cidr),
            ] {
                if let Some(c) = cidr
                    && overlaps(&net, &c)
                {
                    let slot = fam.as_str().to_lowercase();
                    out.push(Problem::new(
                        field,
                        format!("{net} overlaps spec.addressPlan.{slot}.{what} {c}"),
                    ));
                }
            }
        }
        match net {
            IpNet::V6(v6) => Some(v6),
            IpNet::V4(_) => None,
        }
    });

    let mut allowed = Vec::new();
    for (i, raw) in gateway_addresses.allowed_cidrs.iter().enumerate() {
        if let Some(net) = parse_cidr(
            &format!("spec.gatewayAddresses.allowedCIDRs[{i}]"),
            raw,
            None,
            &mut out,
        ) {
            allowed.push(net);
        }
    }
    let mut types = gateway_addresses.address_types.clone();
    if types.is_empty() {
        out.push(Problem::new(
            "spec.gatewayAddresses.addressTypes",
            "must list InternalIP, ExternalIP or both",
        ));
    }
    let before = types.len();
    types.dedup();
    if types.len() != before {
        out.push(Problem::new(
            "spec.gatewayAddresses.addressTypes",
            "lists a type twice",
        ));
    }

    if !out.is_empty() {
        out.sort();
        out.dedup();
        return Err(out);
    }
    Ok(ValidPolicy {
        families,
        family_policy: *ip_family_policy,
        plans,
        nat64_prefix: nat64,
        addresses: AddressRules {
            address_types: types,
            allowed_cidrs: allowed,
            allow_unique_local: gateway_addresses.allow_unique_local,
            allow_private_ipv4: gateway_addresses.allow_private_ipv4,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AddressPlan, GatewayAddressPolicy, Ipv4Plan, Ipv6Plan};
    use proptest::prelude::*;

    fn v6_only() -> DualStackPolicySpec {
        DualStackPolicySpec {
            ip_families: vec![IpFamily::IPv6],
            ip_family_policy: IpFamilyPolicy::SingleStack,
            address_plan: None,
            nat64_prefix: None,
            gateway_addresses: GatewayAddressPolicy::default(),
        }
    }

    fn v6_plan(service: &str, pod: &str, mask: i32, block: i32) -> Option<AddressPlan> {
        Some(AddressPlan {
            ipv4: None,
            ipv6: Some(Ipv6Plan {
                service_cidr: Some(service.into()),
                pod_cidr: Some(pod.into()),
                node_cidr_mask_size: Some(mask),
                block_size: Some(block),
            }),
        })
    }

    fn problems(spec: &DualStackPolicySpec) -> Vec<String> {
        validate_policy(spec)
            .unwrap_err()
            .iter()
            .map(Problem::to_string)
            .collect()
    }

    #[test]
    fn seed_003_plan_is_valid_and_parsed() {
        let mut spec = v6_only();
        spec.address_plan = v6_plan(
            "2001:db8:1234:5678:8:3::/112",
            "2001:db8:1234:5678:8:2::/104",
            120,
            120,
        );
        spec.nat64_prefix = Some("64:ff9b::/96".into());
        let p = validate_policy(&spec).unwrap();
        assert_eq!(p.families_label(), "IPv6");
        assert!(!p.is_dual_stack());
        let plan = &p.plans[&IpFamily::IPv6];
        assert_eq!(
            plan.pod_cidr.unwrap().to_string(),
            "2001:db8:1234:5678:8:2::/104"
        );
        assert_eq!(plan.node_cidr_mask_size, Some(120));
        assert_eq!(p.nat64_prefix.unwrap().to_string(), "64:ff9b::/96");
    }

    #[test]
    fn overlapping_service_and_pod_cidrs_name_the_pod_cidr() {
        let mut spec = v6_only();
        spec.address_plan = v6_plan("fd00:10::/112", "fd00:10::/104", 120, 122);
        assert_eq!(
            problems(&spec),
            [
                "spec.addressPlan.ipv6.podCIDR: fd00:10::/104 overlaps spec.addressPlan.ipv6.serviceCIDR fd00:10::/112"
            ]
        );
    }

    #[test]
    fn node_mask_limits_follow_kube_controller_manager() {
        let mut spec = v6_only();
        spec.address_plan = v6_plan("fd00:96::/112", "fd00:244::/104", 104, 122);
        assert_eq!(
            problems(&spec),
            [
                "spec.addressPlan.ipv6.nodeCIDRMaskSize: /104 must be longer than spec.addressPlan.ipv6.podCIDR fd00:244::/104 (each node gets a slice of the Pod CIDR)"
            ]
        );
        spec.address_plan = v6_plan("fd00:96::/112", "fd00:244::/64", 120, 122);
        assert_eq!(
            problems(&spec),
            [
                "spec.addressPlan.ipv6.nodeCIDRMaskSize: /120 is 56 bits longer than spec.addressPlan.ipv6.podCIDR fd00:244::/64; kube-controller-manager allows at most 16 (use a Pod CIDR of /104 or longer)"
            ]
        );
    }

    #[test]
    fn calico_block_must_fit_in_the_pod_cidr() {
        let mut spec = DualStackPolicySpec {
            ip_families: vec![IpFamily::IPv4, IpFamily::IPv6],
            ip_family_policy: IpFamilyPolicy::RequireDualStack,
            ..v6_only()
        };
        spec.address_plan = Some(AddressPlan {
            ipv4: Some(Ipv4Plan {
                service_cidr: Some("10.96.0.0/16".into()),
                pod_cidr: Some("10.244.0.0/24".into()),
                node_cidr_mask_size: Some(26),
                block_size: Some(22),
            }),
            ipv6: None,
        });
        assert_eq!(
            problems(&spec),
            [
                "spec.addressPlan.ipv4.blockSize: /22 blocks do not fit in spec.addressPlan.ipv4.podCIDR 10.244.0.0/24: the block size must be /24 or longer"
            ]
        );
    }

    #[test]
    fn schema_rules_are_repeated_for_offline_input() {
        let mut spec = v6_only();
        spec.ip_families = vec![IpFamily::IPv6, IpFamily::IPv6];
        spec.nat64_prefix = Some("64:ff9b::/44".into());
        spec.gateway_addresses.allowed_cidrs = vec!["2001:db8::1/32".into(), "nope".into()];
        assert_eq!(
            problems(&spec),
            [
                "spec.gatewayAddresses.allowedCIDRs[0]: 2001:db8::1/32 has host bits set: did you mean 2001:db8::/32?",
                "spec.gatewayAddresses.allowedCIDRs[1]: \"nope\" is not a CIDR: must be a CIDR such as 2001:db8:1::/48 or 192.0.2.0/24",
                "spec.ipFamilies: IPv6 is listed twice",
                "spec.ipFamilyPolicy: SingleStack takes exactly one entry in ipFamilies; use RequireDualStack or PreferDualStack for two",
                "spec.nat64Prefix: a NAT64 prefix (RFC 6052) is /32, /40, /48, /56, /64 or /96",
                "spec.nat64Prefix: applies to IPv6-only policies (ipFamilies: [IPv6]); remove it for dual-stack",
            ]
        );
    }

    #[test]
    fn a_plan_for_a_family_the_policy_lacks_is_refused() {
        let mut spec = v6_only();
        spec.address_plan = Some(AddressPlan {
            ipv4: Some(Ipv4Plan {
                service_cidr: Some("10.96.0.0/16".into()),
                ..Ipv4Plan::default()
            }),
            ipv6: None,
        });
        assert_eq!(
            problems(&spec),
            ["spec.addressPlan.ipv4: is set but IPv4 is not in ipFamilies"]
        );
    }

    fn any_cidrish() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[0-9a-f:./]{0,48}",
            (any::<[u8; 16]>(), 0u8..=140)
                .prop_map(|(b, l)| format!("{}/{l}", std::net::Ipv6Addr::from(b))),
            (any::<[u8; 4]>(), 0u8..=40)
                .prop_map(|(b, l)| format!("{}/{l}", std::net::Ipv4Addr::from(b))),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn random_policies_never_panic_the_validator(
            service in any_cidrish(), pod in any_cidrish(), nat64 in any_cidrish(), allowed in any_cidrish(),
            mask in any::<i32>(), block in any::<i32>(), two in any::<bool>(),
        ) {
            let spec = DualStackPolicySpec {
                ip_families: if two { vec![IpFamily::IPv6, IpFamily::IPv4] } else { vec![IpFamily::IPv6] },
                ip_family_policy: IpFamilyPolicy::PreferDualStack,
                address_plan: Some(AddressPlan {
                    ipv4: Some(Ipv4Plan { service_cidr: Some(service.clone()), pod_cidr: Some(pod.clone()), node_cidr_mask_size: Some(mask), block_size: Some(block) }),
                    ipv6: Some(Ipv6Plan { service_cidr: Some(service), pod_cidr: Some(pod), node_cidr_mask_size: Some(mask), block_size: Some(block) }),
                }),
                nat64_prefix: Some(nat64),
                gateway_addresses: GatewayAddressPolicy { allowed_cidrs: vec![allowed], ..GatewayAddressPolicy::default() },
            };
            if let Err(problems) = validate_policy(&spec) {
                prop_assert!(problems.iter().all(|p| p.field.starts_with("spec.")));
            }
        }
    }
}
