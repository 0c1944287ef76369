//! A [`Report`] as an aligned text table (for people) or as a JSON document
//! with a stable schema (for scripts; docs/check.md describes it).

use serde::Serialize;

use super::{Level, Report, Row};
use crate::api::IpFamily;

/// The `schema` field of the JSON document; a new one if a field ever
/// changes meaning or goes away (new fields may be added under this one).
pub const JSON_SCHEMA: &str = "dualmesh.io/check/v1";

fn counts(report: &Report) -> [(Level, usize); 3] {
    [Level::Ok, Level::Warn, Level::Fail]
        .map(|l| (l, report.rows.iter().filter(|r| r.level == l).count()))
}

fn subject(report: &Report) -> String {
    let families: Vec<&str> = report.families.iter().map(|f| f.as_str()).collect();
    match &report.policy {
        Some(p) => format!("DualStackPolicy {p} ({})", families.join(", ")),
        None => format!("no policy: both families ({})", families.join(", ")),
    }
}

/// The table: one line per row, the fix indented below it.
pub fn text(report: &Report) -> String {
    let header = ["FAMILY", "CHECK", "LEVEL"];
    let cells: Vec<[&str; 3]> = report
        .rows
        .iter()
        .map(|r| [r.scope.as_str(), r.check, r.level.as_str()])
        .collect();
    let mut widths = header.map(str::len);
    for c in &cells {
        for (w, cell) in widths.iter_mut().zip(c) {
            *w = (*w).max(cell.len());
        }
    }
    let indent = widths.iter().sum::<usize>() + 2 * widths.len();
    let line = |c: [&str; 3], rest: &str| {
        format!(
            "{:w0$}  {:w1$}  {:w2$}  {rest}\n",
            c[0],
            c[1],
            c[2],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )
    };
    let mut out = format!("dualmesh check: {}\n\n", subject(report));
    out.push_str(&line(header, "SAW"));
    for (c, r) in cells.into_iter().zip(&report.rows) {
        out.push_str(&line(c, &r.saw));
        if let Some(fix) = &r.fix {
            out.push_str(&format!("{:indent$}fix: {fix}\n", ""));
        }
    }
    let summary: Vec<String> = counts(report)
        .iter()
        .map(|(l, n)| format!("{n} {}", l.as_str()))
        .collect();
    out.push_str(&format!(
        "\n{}: {}\n",
        report.worst().as_str(),
        summary.join(", ")
    ));
    out
}

/// The JSON document: fields in this order, documented in docs/check.md.
#[derive(Serialize)]
struct Document<'a> {
    schema: &'static str,
    policy: Option<&'a str>,
    families: &'a [IpFamily],
    result: Level,
    summary: Summary,
    rows: &'a [Row],
}

#[derive(Serialize)]
struct Summary {
    #[serde(rename = "OK")]
    ok: usize,
    #[serde(rename = "WARN")]
    warn: usize,
    #[serde(rename = "FAIL")]
    fail: usize,
}

/// The JSON document, pretty-printed, ending in a newline.
pub fn json(report: &Report) -> String {
    let [(_, ok), (_, warn), (_, fail)] = counts(report);
    let doc = Document {
        schema: JSON_SCHEMA,
        policy: report.policy.as_deref(),
        families: &report.families,
        result: report.worst(),
        summary: Summary { ok, warn, fail },
        rows: &report.rows,
    };
    let mut s = serde_json::to_string_pretty(&doc).expect("a report serializes");
    s.push('\n');
    s
}
