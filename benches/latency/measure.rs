//! The floor (one raw server-side apply), series, verdicts, reports and resource usage.

use super::*;

/// One raw server-side apply at a time on one plane: sent -> response, and
/// sent -> seen by a watch.
pub(crate) struct Floor {
    pub(crate) api: Api<ConfigMap>,
    pub(crate) watch: Watch<ConfigMap>,
    pub(crate) writes: u64,
    pub(crate) patch: Vec<Duration>,
    pub(crate) seen: Vec<Duration>,
}

impl Floor {
    pub(crate) async fn new(client: &Client, plane: &str) -> Self {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let mut floor = Floor {
            watch: Watch::start(
                api.clone(),
                watcher::Config::default().fields(&format!("metadata.name={FLOOR_CM}")),
                &format!("{plane} default/{FLOOR_CM}"),
            )
            .await,
            api,
            writes: 0,
            patch: Vec::new(),
            seen: Vec::new(),
        };
        // The first apply creates the object; what is measured are updates.
        floor.sample(false).await;
        floor
    }

    pub(crate) async fn sample(&mut self, record: bool) {
        self.writes += 1;
        let value = self.writes.to_string();
        let body = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": FLOOR_CM, "namespace": "default"},
            "data": {"value": value},
        });
        let params = PatchParams::apply("bench-floor").force();
        let sent = Instant::now();
        self.api
            .patch(FLOOR_CM, &params, &Patch::Apply(&body))
            .await
            .expect("floor: apply the ConfigMap");
        let returned = Instant::now();
        let seen = self
            .watch
            .until(sent, "the floor's write", |s| {
                s.applied(FLOOR_CM)
                    .and_then(|cm| cm.data.as_ref()?.get("value"))
                    .is_some_and(|v| *v == value)
            })
            .await
            .unwrap_or_else(|e| panic!("floor: {e}"));
        if record {
            self.patch.push(returned - sent);
            self.seen.push(seen - sent);
        }
    }
}

// ---------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------

/// One measured series.
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) samples: Vec<Duration>,
}

/// One target check.
pub(crate) struct Verdict {
    pub(crate) check: String,
    pub(crate) measured: Duration,
    pub(crate) limit: Duration,
}

impl Verdict {
    pub(crate) fn pass(&self) -> bool {
        self.measured <= self.limit
    }

    pub(crate) fn line(&self) -> String {
        let word = support::verdict(self.pass());
        let how = if self.pass() {
            format!("{} ms to spare", support::ms(self.limit - self.measured))
        } else {
            format!(
                "over by {} ms ({:.1}x the limit)",
                support::ms(self.measured - self.limit),
                ratio(self.measured, self.limit)
            )
        };
        format!("  {word}  {}: {how}", self.check)
    }
}

pub(crate) fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

/// What one scenario measured.
pub(crate) struct Report {
    pub(crate) id: &'static str,
    pub(crate) title: String,
    pub(crate) series: Vec<Series>,
    pub(crate) verdicts: Vec<Verdict>,
    pub(crate) notes: Vec<String>,
}

impl Report {
    pub(crate) fn print(&self) {
        println!("\n({}) {}", self.id, self.title);
        println!("{}", support::header());
        for s in &self.series {
            println!("{}", support::row(&s.name, &Summary::of(&s.samples)));
        }
        for v in &self.verdicts {
            println!("{}", v.line());
        }
        for n in &self.notes {
            println!("  note: {n}");
        }
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        let msf = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
        json!({
            "id": self.id,
            "title": self.title,
            "series": self.series.iter().map(|s| {
                let sum = Summary::of(&s.samples);
                json!({
                    "name": s.name,
                    "n": sum.count,
                    "p50_ms": msf(sum.p50),
                    "p95_ms": msf(sum.p95),
                    "p99_ms": msf(sum.p99),
                    "max_ms": msf(sum.max),
                    "samples_ms": s.samples.iter().map(|d| msf(*d)).collect::<Vec<_>>(),
                })
            }).collect::<Vec<_>>(),
            "verdicts": self.verdicts.iter().map(|v| json!({
                "check": v.check,
                "measured_ms": msf(v.measured),
                "limit_ms": msf(v.limit),
                "pass": v.pass(),
            })).collect::<Vec<_>>(),
            "notes": self.notes,
        })
    }
}

/// The targets of (a) and (b): p50 within 3x the raw PATCH p50, p99 under
/// 250 ms.
pub(crate) fn reactive_verdicts(
    id: &str,
    latency: &[Duration],
    floor: &[Duration],
) -> Vec<Verdict> {
    let l = Summary::of(latency);
    let f = Summary::of(floor);
    vec![
        Verdict {
            check: format!(
                "({id}) p50 {} ms <= 3x raw PATCH p50 (3 x {} = {} ms); it is {:.1}x",
                support::ms(l.p50),
                support::ms(f.p50),
                support::ms(f.p50 * 3),
                ratio(l.p50, f.p50)
            ),
            measured: l.p50,
            limit: f.p50 * 3,
        },
        Verdict {
            check: format!("({id}) p99 {} ms < 250 ms", support::ms(l.p99)),
            measured: l.p99,
            limit: Duration::from_millis(250),
        },
    ]
}

/// The operator's CPU time and memory over a scenario.
pub(crate) struct Usage {
    pub(crate) pid: Option<u32>,
    pub(crate) cpu_before: Option<Duration>,
}

impl Usage {
    pub(crate) fn start(operator: &Operator) -> Self {
        let pid = operator.pid();
        Usage {
            pid,
            cpu_before: pid.and_then(support::cpu_time),
        }
    }

    pub(crate) fn note(&self, events: usize) -> String {
        let Some(pid) = self.pid else {
            return "operator not running".into();
        };
        let cpu = support::cpu_time(pid)
            .zip(self.cpu_before)
            .map(|(after, before)| after.saturating_sub(before));
        let rss = support::rss_kib(pid);
        format!(
            "operator CPU {} over the measured events ({} per event); RSS {} MiB, peak {} MiB",
            cpu.map_or("?".into(), |c| format!("{} ms", support::ms(c))),
            cpu.map_or("?".into(), |c| format!(
                "{} ms",
                support::ms(c / events.max(1) as u32)
            )),
            rss.map_or("?".into(), |(r, _)| (r / 1024).to_string()),
            rss.map_or("?".into(), |(_, p)| (p / 1024).to_string()),
        )
    }
}
