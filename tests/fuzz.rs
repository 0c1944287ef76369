//! Property tests over whole MeshCluster + DualStackPolicy inputs (issue #8,
//! "fuzzing"): any input either fails validation with problems naming
//! `spec.` fields, or renders, and rendering never panics, is deterministic
//! (same YAML, same hash), parses back as YAML and carries the dual-stack
//! switches exactly when the policy is dual-stack. Bounded in `make test` by
//! the case count; raise it with PROPTEST_CASES for a longer run.

mod common;

use common::example;
use dualmesh::api::{DualStackPolicy, MeshCluster};
use dualmesh::desired::istio_operator;
use dualmesh::desired::validate::{validate_mesh_cluster, validate_policy};
use proptest::prelude::*;

/// Mostly plausible, sometimes hostile strings: empty, unicode, YAML
/// specials, very long.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        40 => "[a-z][a-z0-9-]{0,20}",
        1 => "[a-z0-9.:/\\[\\]-]{0,40}",
        1 => Just(String::new()),
        1 => Just("'\"{}[]:#&*!|>%@`\n---\n".to_string()),
        1 => "\\PC{0,30}",
        1 => "[a-z]{300}",
    ]
}

/// Mostly valid DNS-1123 labels (the shape of every name field).
fn name() -> impl Strategy<Value = String> {
    prop_oneof![9 => "[a-z]([a-z0-9-]{0,18}[a-z0-9])?", 1 => text()]
}

/// Mostly valid environment variable names.
fn env_name() -> impl Strategy<Value = String> {
    prop_oneof![9 => "[A-Z_][A-Z0-9_]{0,15}", 1 => text()]
}

/// Mostly valid host:port values, IPv6 literals in brackets.
fn host_port() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => ("[a-z]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z]{1,8}){0,2}", 1..=65535u32).prop_map(|(h, p)| format!("{h}:{p}")),
        4 => (any::<[u16; 8]>(), 1..=65535u32).prop_map(|(s, p)| {
            let a = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]);
            format!("[{a}]:{p}")
        }),
        1 => text(),
    ]
}

fn cidr() -> impl Strategy<Value = String> {
    prop_oneof![
        (any::<[u16; 8]>(), 0u8..=130).prop_map(|(s, p)| {
            let a = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]);
            format!("{a}/{p}")
        }),
        (any::<[u8; 4]>(), 0u8..=34)
            .prop_map(|(o, p)| format!("{}/{p}", std::net::Ipv4Addr::from(o))),
        text(),
    ]
}

fn policy_file() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("policy-ipv6-only.yaml"),
        Just("policy-dual-stack-ipv6-primary.yaml"),
        Just("policy-dual-stack-ipv4-primary.yaml"),
    ]
}

fn mc_file() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("meshcluster-alpha.yaml"),
        Just("meshcluster-beta.yaml")
    ]
}

#[derive(Debug, Clone)]
struct Input {
    mc: MeshCluster,
    policy: DualStackPolicy,
}

prop_compose! {
    fn input()(
        mc_file in mc_file(), policy_file in policy_file(),
        cluster in name(), network in name(), mesh in name(), hub in text(), tag in text(),
        revision in proptest::option::of(name()), namespace in name(), operator in name(),
        env in proptest::collection::btree_map(env_name(), text(), 0..4),
        metadata in proptest::collection::btree_map(env_name(), text(), 0..4),
        gw_name in name(),
        node_port in prop_oneof![8 => (30000..=32767i32).prop_map(Some), 1 => Just(None), 1 => any::<i32>().prop_map(Some)],
        network_port in prop_oneof![9 => 1..=65535i32, 1 => any::<i32>()],
        selector in proptest::collection::btree_map(name(), name(), 0..3),
        agent in proptest::option::of(host_port()),
        // Address-plan changes are rarer (None: keep the example's value):
        // almost any random plan is invalid, and rendering needs valid ones.
        service in prop::option::weighted(0.1, proptest::option::of(cidr())),
        pod in prop::option::weighted(0.1, proptest::option::of(cidr())),
        nat64 in prop::option::weighted(0.1, proptest::option::of(cidr())),
        allowed in prop::option::weighted(0.2, proptest::collection::vec(cidr(), 0..3)),
        mask in prop::option::weighted(0.1, proptest::option::of(any::<i32>())),
        block in prop::option::weighted(0.1, proptest::option::of(any::<i32>())),
    ) -> Input {
        let mut mc: MeshCluster = example(mc_file);
        let mut policy: DualStackPolicy = example(policy_file);
        mc.spec.cluster_name = cluster;
        mc.spec.network = network;
        mc.spec.mesh_id = mesh;
        mc.spec.istio.hub = hub;
        mc.spec.istio.tag = tag;
        mc.spec.istio.revision = revision;
        mc.spec.istio.namespace = namespace;
        mc.spec.istio.operator_name = operator;
        mc.spec.istio.pilot_env = env;
        mc.spec.istio.proxy_metadata = metadata;
        mc.spec.ingress_gateway.name = gw_name;
        mc.spec.ingress_gateway.tls_node_port = node_port;
        mc.spec.ingress_gateway.network_gateway_port = network_port;
        mc.spec.ingress_gateway.pod_selector = selector;
        if let (Some(g), Some(a)) = (mc.spec.istio.gloo_mesh.as_mut(), agent) {
            g.agent_address = a;
        }
        if let Some(plan) = policy.spec.address_plan.as_mut() {
            if let Some(v6) = plan.ipv6.as_mut() {
                if let Some(x) = service.clone() { v6.service_cidr = x; }
                if let Some(x) = pod.clone() { v6.pod_cidr = x; }
                if let Some(x) = mask { v6.node_cidr_mask_size = x; }
                if let Some(x) = block { v6.block_size = x; }
            }
            if let Some(v4) = plan.ipv4.as_mut() {
                if let Some(x) = service { v4.service_cidr = x; }
                if let Some(x) = pod { v4.pod_cidr = x; }
            }
        }
        if let Some(x) = nat64 { policy.spec.nat64_prefix = x; }
        if let Some(x) = allowed { policy.spec.gateway_addresses.allowed_cidrs = x; }
        Input { mc, policy }
    }
}

fn scalar() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        text().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
    ]
}

/// Every path to a value in `v` (objects and arrays included).
fn paths(v: &serde_json::Value, here: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(here.clone());
    match v {
        serde_json::Value::Object(m) => {
            for (k, child) in m {
                here.push(k.clone());
                paths(child, here, out);
                here.pop();
            }
        }
        serde_json::Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                here.push(i.to_string());
                paths(child, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

/// `v` with the value at one picked path replaced.
fn mutate(
    v: &serde_json::Value,
    pick: prop::sample::Index,
    with: serde_json::Value,
) -> serde_json::Value {
    let mut all = Vec::new();
    paths(v, &mut Vec::new(), &mut all);
    let path = &all[pick.index(all.len())];
    let mut out = v.clone();
    let mut at = &mut out;
    for step in path {
        at = match at {
            serde_json::Value::Object(m) => m.get_mut(step).expect("path exists"),
            serde_json::Value::Array(a) => &mut a[step.parse::<usize>().expect("index")],
            _ => unreachable!("paths only descend into containers"),
        };
    }
    *at = with;
    out
}

static MUTANTS_RENDERED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static RENDERED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1000)
}

fn refused_by_field_or_renders_deterministically(input: Input) -> Result<(), TestCaseError> {
    let mc = validate_mesh_cluster(&input.mc.spec);
    let policy = validate_policy(&input.policy.spec);
    let (mc, policy) = match (mc, policy) {
        (Ok(mc), Ok(policy)) => (mc, policy),
        (mc, policy) => {
            if std::env::var_os("FUZZ_DEBUG").is_some() {
                let show = |p: &Vec<dualmesh::desired::validate::Problem>| {
                    p.iter().map(ToString::to_string).collect::<Vec<_>>()
                };
                eprintln!(
                    "{:?} | {:?}",
                    mc.as_ref().err().map(show),
                    policy.as_ref().err().map(show)
                );
            }
            for problems in [mc.err(), policy.err()].into_iter().flatten() {
                prop_assert!(!problems.is_empty());
                for p in problems {
                    prop_assert!(p.field.starts_with("spec."), "{p}");
                    prop_assert!(!p.to_string().is_empty());
                }
            }
            return Ok(());
        }
    };
    RENDERED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let first = istio_operator::build(&mc, &policy);
    let second = istio_operator::build(&mc, &policy);
    prop_assert_eq!(&first.yaml, &second.yaml);
    prop_assert_eq!(&first.hash, &second.hash);
    let parsed: serde_json::Value =
        serde_saphyr::from_str(&first.yaml).expect("rendered YAML parses");
    prop_assert_eq!(parsed["kind"].as_str(), Some("IstioOperator"));
    let dual = input.policy.spec.ip_families.len() == 2;
    prop_assert_eq!(
        first.yaml.contains("ISTIO_DUAL_STACK"),
        dual,
        "{}",
        first.yaml
    );
    Ok(())
}

/// The whole-input strategy is a deep type: its value trees need more than
/// a test thread's 2 MiB of stack in a debug build, so it runs on its own
/// thread.
#[test]
fn any_input_is_refused_by_field_or_renders_deterministically() {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(|| {
            let mut runner =
                proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases()));
            if let Err(e) = runner.run(&input(), refused_by_field_or_renders_deterministically) {
                panic!("{e}");
            }
        })
        .expect("spawn")
        .join()
        .expect("no failing input");
    // Not a vacuous pass: about a quarter of the inputs get as far as
    // rendering (250, 247 and 260 of 1000 in three runs). The bound, a
    // fifth, is four standard deviations below that share at the default
    // 1000 cases. The podSelector's keys and values are mostly valid labels
    // (`name()`): with `text()` in every entry, since labels are validated,
    // the share fell to 154 of 1000.
    let rendered = RENDERED.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{rendered} of {} inputs rendered", cases());
    assert!(
        rendered * 5 >= cases() as usize,
        "only {rendered} of {} inputs rendered, less than a fifth",
        cases()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    fn mutated_examples_never_panic(
        mc_file in mc_file(), policy_file in policy_file(),
        mc_pick in any::<prop::sample::Index>(), policy_pick in any::<prop::sample::Index>(),
        mc_value in scalar(), policy_value in scalar(),
    ) {
        let mc = mutate(&example::<serde_json::Value>(mc_file), mc_pick, mc_value);
        let policy = mutate(&example::<serde_json::Value>(policy_file), policy_pick, policy_value);
        // Inputs the API server's schema would refuse do not deserialize;
        // the rest must validate or render without a panic.
        let (Ok(mc), Ok(policy)) = (
            serde_json::from_value::<MeshCluster>(mc),
            serde_json::from_value::<DualStackPolicy>(policy),
        ) else {
            return Ok(());
        };
        if let (Ok(mc), Ok(policy)) = (validate_mesh_cluster(&mc.spec), validate_policy(&policy.spec)) {
            MUTANTS_RENDERED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let a = istio_operator::build(&mc, &policy);
            let b = istio_operator::build(&mc, &policy);
            prop_assert_eq!(a.yaml, b.yaml);
        }
    }
}

/// Runs the mutation property and checks it reached the renderer often
/// enough to mean something (one test, so the count is this run's).
#[test]
fn any_field_of_an_example_replaced_by_any_value_never_panics() {
    mutated_examples_never_panic();
    let rendered = MUTANTS_RENDERED.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{rendered} of {} mutated inputs rendered", cases());
    // Most single mutations break a type; about 3% still render (28 of 1000
    // in one run). The bound, 1%, is three and a half standard deviations
    // below that share at the default 1000 cases: no closer without flaking.
    assert!(
        rendered * 100 >= cases() as usize,
        "only {rendered} of {} mutants rendered, less than 1%",
        cases()
    );
}
