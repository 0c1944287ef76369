//! Scenario (c): the relay token rotated -> every member's copy updated.

use super::*;

pub(crate) fn token_of(secret: &Secret) -> Option<String> {
    let v = secret.data.as_ref()?.get("token")?;
    Some(String::from_utf8_lossy(&v.0).into_owned())
}

/// Resident memory of a plane's etcd and kube-apiserver, in MiB.
pub(crate) fn plane_rss_mib(plane: &ControlPlane) -> u64 {
    let (etcd, apiserver) = plane.pids();
    [etcd, apiserver]
        .into_iter()
        .flatten()
        .filter_map(support::rss_kib)
        .map(|(rss, _)| rss / 1024)
        .sum()
}

pub(crate) async fn scenario_federation(s: &Settings) -> Report {
    let n = s.members;
    // Every plane at once (or BENCH_PLANE_STARTS at a time): each start is
    // mostly waiting for kube-apiserver's post-start hooks.
    let starting = Instant::now();
    let names: Vec<String> = std::iter::once("lat-alpha".to_string())
        .chain((0..n).map(|m| format!("lat-member-{m}")))
        .collect();
    let mut planes: Vec<ControlPlane> = futures::stream::iter(names.clone())
        .map(|name| async move {
            ControlPlane::start(plane_options(&name))
                .await
                .unwrap_or_else(|e| panic!("plane {name}: {e}"))
        })
        .buffered(s.plane_starts)
        .collect()
        .await;
    let start_time = starting.elapsed();
    let members: Vec<ControlPlane> = planes.split_off(1);
    let alpha = planes.pop().expect("the management plane");

    let a = alpha.client().await.expect("client");
    install_dualmesh_crds(&a).await;
    create_namespace(&a, NS).await;
    create_namespace(&a, GLOO_NS).await;
    put_secret(
        &a,
        GLOO_NS,
        "relay-root-tls-secret",
        &[
            (
                "ca.crt",
                "-----BEGIN CERTIFICATE-----\nbenchROOTca\n-----END CERTIFICATE-----\n",
            ),
            (
                "tls.key",
                "-----BEGIN PRIVATE KEY-----\nbenchKEY\n-----END PRIVATE KEY-----\n",
            ),
        ],
    )
    .await;
    put_secret(&a, GLOO_NS, TOKEN_SECRET, &[("token", "token-initial")]).await;
    let mut member_clients = Vec::new();
    for (m, plane) in members.iter().enumerate() {
        let kubeconfig = std::fs::read_to_string(plane.kubeconfig_path()).expect("kubeconfig");
        put_secret(
            &a,
            NS,
            &format!("member-{m}-kubeconfig"),
            &[("kubeconfig", &kubeconfig)],
        )
        .await;
        let client = plane.client().await.expect("member client");
        // A gateway in each member, so its MeshCluster can be Ready.
        create_gateway(&client, "node-1", &[&format!("2001:db8:{:x}::1", m + 1)]).await;
        member_clients.push(client);
    }
    let policy: DualStackPolicy = example("policy-ipv6-only.yaml");
    create_policy(&a, &policy).await;
    let mut meshclusters = Watch::<MeshCluster>::start(
        Api::namespaced(a.clone(), NS),
        watcher::Config::default(),
        "lat-alpha MeshClusters",
    )
    .await;
    let mut copies = Vec::new();
    for (m, client) in member_clients.iter().enumerate() {
        copies.push(
            Watch::<Secret>::start(
                Api::namespaced(client.clone(), GLOO_NS),
                watcher::Config::default().fields(&format!("metadata.name={TOKEN_SECRET}")),
                &format!("lat-member-{m} {GLOO_NS}/{TOKEN_SECRET}"),
            )
            .await,
        );
    }
    let operator = operator(&alpha, s).await;
    let template: MeshCluster = example("meshcluster-beta.yaml");
    let connecting = Instant::now();
    for m in 0..n {
        let mut mc = template.clone();
        mc.metadata.name = Some(format!("member-{m}"));
        mc.spec.cluster_name = format!("cluster-member-{m}");
        mc.spec.network = format!("cluster-member-{m}-network");
        mc.spec
            .kubeconfig_secret_ref
            .as_mut()
            .expect("the example is a member")
            .name = format!("member-{m}-kubeconfig");
        create_meshcluster(&a, &mc).await;
    }
    // One channel carries every MeshCluster's events: wait for all of
    // them at once (waiting for one after the other would drop the others'
    // events while reading).
    let mut not_ready: std::collections::BTreeSet<String> =
        (0..n).map(|m| format!("member-{m}")).collect();
    meshclusters
        .until(connecting, "every member MeshCluster Ready=True", |e| {
            if let Seen::Applied(mc) = e
                && is_ready(mc)
            {
                not_ready.remove(&mc.name_any());
            }
            not_ready.is_empty()
        })
        .await
        .unwrap_or_else(|e| fail(&operator, format!("{e}; not Ready: {not_ready:?}")));
    for (m, copy) in copies.iter_mut().enumerate() {
        copy.until(connecting, &format!("member {m}'s first copy"), |e| {
            e.applied(TOKEN_SECRET)
                .and_then(token_of)
                .is_some_and(|t| t == "token-initial")
        })
        .await
        .unwrap_or_else(|e| fail(&operator, e));
    }
    let connected = connecting.elapsed();

    let mut floor_alpha = Floor::new(&a, "lat-alpha").await;
    let mut floor_member = Floor::new(&member_clients[0], "lat-member-0").await;
    let (mut last, mut first, mut per_member) = (vec![], vec![], vec![]);
    let mut usage = None;
    for i in 0..s.total() {
        let record = i >= s.warmup;
        if i == s.warmup {
            usage = Some(Usage::start(&operator));
        }
        floor_alpha.sample(record).await;
        floor_member.sample(record).await;
        settle(s).await;

        let token = format!("token-rotated-{i}");
        let sent = Instant::now();
        put_secret(&a, GLOO_NS, TOKEN_SECRET, &[("token", &token)]).await;
        let mut arrivals = Vec::with_capacity(n);
        for (m, copy) in copies.iter_mut().enumerate() {
            let at = copy
                .until(sent, &format!("member {m}'s copy = rotation {i}"), |e| {
                    e.applied(TOKEN_SECRET)
                        .and_then(token_of)
                        .is_some_and(|t| t == token)
                })
                .await
                .unwrap_or_else(|e| fail(&operator, e));
            arrivals.push(at - sent);
        }
        if record {
            last.push(*arrivals.iter().max().expect("at least one member"));
            first.push(*arrivals.iter().min().expect("at least one member"));
            per_member.extend(arrivals);
        }
    }
    let usage = usage.expect("at least one measured event");
    let l = Summary::of(&last);
    let fa = Summary::of(&floor_alpha.patch);
    let fm = Summary::of(&floor_member.patch);
    let rss: u64 = std::iter::once(&alpha)
        .chain(members.iter())
        .map(plane_rss_mib)
        .sum();
    let report = Report {
        id: "c",
        title: format!("source Secret rotated -> every member updated ({n} member planes)"),
        series: vec![
            Series {
                name: format!("(c) rotated -> last of {n} members updated"),
                samples: last,
            },
            Series {
                name: "    rotated -> first member updated".into(),
                samples: first,
            },
            Series {
                name: format!("    rotated -> a member updated (x{n})"),
                samples: per_member,
            },
            Series {
                name: "floor: raw SSA PATCH (management plane)".into(),
                samples: floor_alpha.patch,
            },
            Series {
                name: "floor: raw SSA PATCH -> seen (management)".into(),
                samples: floor_alpha.seen,
            },
            Series {
                name: "floor: raw SSA PATCH (member plane 0)".into(),
                samples: floor_member.patch,
            },
            Series {
                name: "floor: raw SSA PATCH -> seen (member 0)".into(),
                samples: floor_member.seen,
            },
        ],
        verdicts: vec![Verdict {
            check: format!(
                "(c) p99 to the last member {} ms < 1000 ms (p50 {} ms = {:.1}x the raw PATCH)",
                support::ms(l.p99),
                support::ms(l.p50),
                ratio(l.p50, fa.p50)
            ),
            measured: l.p99,
            limit: Duration::from_secs(1),
        }],
        notes: vec![
            format!(
                "{} planes (1 management + {n} members) started in {:.1} s, {} at a time; all {n} MeshClusters Ready and synced {:.1} s after creation",
                n + 1,
                start_time.as_secs_f64(),
                s.plane_starts.min(n + 1),
                connected.as_secs_f64()
            ),
            format!(
                "etcd + kube-apiserver resident memory, all {} planes: {rss} MiB",
                n + 1
            ),
            // Every plane's apiserver shares the machine's cores: a
            // management floor far above the member floor means the run was
            // CPU-bound, and (c) is then a figure for this machine only.
            format!(
                "raw PATCH p50: management plane {} ms, member plane {} ms; load average now {}",
                support::ms(fa.p50),
                support::ms(fm.p50),
                support::loadavg()
            ),
            usage.note(s.events),
        ],
    };
    drop(copies);
    drop(operator);
    drop(members);
    drop(alpha);
    report
}
