//! What the benchmarks share: latency summaries (p50/p95/p99), the
//! operator process's resident memory and CPU time read from /proc, and the
//! one report builder ([`ReportFile`], [`verdict`]) that writes each run's
//! figures to `target/bench/<name>.json` with when, where and on what it ran.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// p50 / p95 / p99 / max of a set of samples (nearest-rank percentiles).
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub count: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// The nearest-rank percentile `p` (0..=100) of sorted `samples`.
fn nearest_rank(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Summary {
    /// Panics on no samples: a benchmark that measured nothing is a bug.
    pub fn of(samples: &[Duration]) -> Summary {
        assert!(!samples.is_empty(), "no samples");
        let mut sorted = samples.to_vec();
        sorted.sort();
        Summary {
            count: sorted.len(),
            p50: nearest_rank(&sorted, 50.0),
            p95: nearest_rank(&sorted, 95.0),
            p99: nearest_rank(&sorted, 99.0),
            max: *sorted.last().expect("non-empty"),
        }
    }
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// One table row: `name  n  p50  p95  p99  max` (ms).
pub fn row(name: &str, s: &Summary) -> String {
    format!(
        "{name:<44} {:>5} {:>9} {:>9} {:>9} {:>9}",
        s.count,
        ms(s.p50),
        ms(s.p95),
        ms(s.p99),
        ms(s.max)
    )
}

/// The header for [`row`].
pub fn header() -> String {
    format!(
        "{:<44} {:>5} {:>9} {:>9} {:>9} {:>9}",
        "what (ms)", "n", "p50", "p95", "p99", "max"
    )
}

/// A process's resident set size now and at its peak (VmRSS, VmHWM), in KiB.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find_map(|l| {
            l.strip_prefix(name)?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = clock_ticks_per_second();
    Some(Duration::from_secs_f64(ticks as f64 / hz as f64))
}

fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// An environment variable as a number, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// PASS or MISS, as every report prints a target check.
pub fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "MISS" }
}

/// The 1, 5 and 15 minute load averages, as /proc/loadavg has them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Cargo's target folder (`$CARGO_TARGET_DIR`, relative to the repository,
/// or `target/`).
pub fn target_dir() -> PathBuf {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => repo.join(dir),
        None => repo.join("target"),
    }
}

/// `git describe --always --dirty` of the repository, when git answers.
pub fn git_revision() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The figures file of one benchmark run: started when the run starts, so
/// that it records the machine's load before and after and how long it took.
pub struct ReportFile {
    name: &'static str,
    started: Instant,
    load_start: String,
}

impl ReportFile {
    pub fn start(name: &'static str) -> Self {
        ReportFile {
            name,
            started: Instant::now(),
            load_start: loadavg(),
        }
    }

    /// The load average when the run started.
    pub fn load_start(&self) -> &str {
        &self.load_start
    }

    /// How long the run has taken so far.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Writes `figures` (a JSON object) with the run's context (benchmark,
    /// git revision, time, cores, load at start and end, seconds taken) to
    /// `target/bench/<name>.json`; returns the path.
    pub fn write(&self, figures: serde_json::Value) -> PathBuf {
        let serde_json::Value::Object(figures) = figures else {
            panic!("the figures of a report are a JSON object");
        };
        let mut doc = serde_json::json!({
            "benchmark": self.name,
            "git": git_revision(),
            "unix_time": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "load_start": self.load_start,
            "load_end": loadavg(),
            "took_s": self.started.elapsed().as_secs_f64(),
        });
        doc.as_object_mut().expect("an object").extend(figures);
        let dir = target_dir().join("bench");
        std::fs::create_dir_all(&dir).expect("create target/bench");
        let path = dir.join(format!("{}.json", self.name));
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&doc).expect("JSON") + "\n",
        )
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = Summary::of(&samples);
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p95, Duration::from_millis(95));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.max, Duration::from_millis(100));
    }
}
