//! One row of `segzoo runs summary` per run folder: the model (from the run's resolved
//! `config.toml`), steps done, the best score and its step, the last logged loss and
//! throughput (`metrics.jsonl`), how many generations trained it (starts: the first and
//! each resume or elastic re-formation), training time and status (`status.json`; a
//! "running" run whose process is gone was killed).
use super::records::{self, Record};
use super::status::{self, State};
use anyhow::Context;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRow {
    pub dir: PathBuf,
    pub model: String,
    pub steps: u64,
    /// Starts of training in this folder (0 for runs from before segzoo recorded them).
    pub generations: usize,
    /// (metric, value, step).
    pub best: Option<(String, f64, u64)>,
    pub last_loss: Option<f64>,
    pub img_per_s: Option<f64>,
    pub wall_s: Option<f64>,
    /// running, finished, interrupted, failed or killed.
    pub status: String,
    /// The error of a failed run, the signal of an interrupted one.
    pub detail: Option<String>,
    /// The ranks named slow most often: (rank, intervals named), most first, of how many
    /// intervals were judged (runs of several ranks).
    pub stragglers: Vec<(usize, u64)>,
    pub judged_intervals: u64,
}

/// Whether process `pid` on this host is alive and a segzoo.
fn segzoo_alive(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).split('\0').next().is_some_and(|exe| exe.contains("segzoo")))
}

fn model_name(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("config.toml")).unwrap_or_default();
    toml::from_str::<toml::Value>(&text)
        .ok()
        .and_then(|v| v.get("model")?.get("name")?.as_str().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

pub fn summarize(dir: &Path) -> anyhow::Result<RunRow> {
    let metrics = dir.join("metrics.jsonl");
    let status = status::read(dir).ok();
    if status.is_none() && !metrics.exists() {
        anyhow::bail!("{}: not a run folder (no status.json or metrics.jsonl)", dir.display());
    }
    let records = if metrics.exists() { records::read(&metrics)? } else { Vec::new() };
    let mut row = RunRow {
        dir: dir.to_path_buf(),
        model: model_name(dir),
        steps: 0,
        generations: 0,
        best: None,
        last_loss: None,
        img_per_s: None,
        wall_s: status.as_ref().map(status::RunStatus::wall_s),
        status: "unknown".into(),
        detail: None,
        stragglers: Vec::new(),
        judged_intervals: 0,
    };
    let mut named: std::collections::BTreeMap<usize, u64> = std::collections::BTreeMap::new();
    for r in &records {
        row.steps = row.steps.max(r.step());
        match r {
            Record::Train(t) => {
                (row.last_loss, row.img_per_s) = (Some(t.loss), Some(t.img_per_s));
                row.judged_intervals += u64::from(t.straggler_ratio.is_some());
                if let Some(s) = &t.straggler {
                    *named.entry(s.rank).or_default() += 1;
                }
            }
            Record::Start(_) => row.generations += 1,
            Record::Eval(e) => {
                let (metric, value) = e.score.main();
                if value.is_finite() && row.best.as_ref().is_none_or(|b| value > b.1) {
                    row.best = Some((metric.to_string(), value, e.step));
                }
            }
        }
    }
    row.stragglers = named.into_iter().collect();
    row.stragglers.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    if let Some((step, _)) = super::checkpoint::list(&dir.join("checkpoints")).first() {
        row.steps = row.steps.max(*step);
    }
    if let Some(s) = status {
        (row.status, row.detail) = match s.state {
            State::Finished => ("finished".into(), None),
            State::Interrupted => ("interrupted".into(), s.error),
            State::Failed => ("failed".into(), s.error),
            State::Running if s.host == status::hostname() && !segzoo_alive(s.pid) => {
                ("killed".into(), Some(format!("process {} on {} ended without a status", s.pid, s.host)))
            }
            State::Running if s.host == status::hostname() => ("running".into(), None),
            State::Running => ("running".into(), Some(format!("on {} (not checked from here)", s.host))),
        };
    }
    Ok(row)
}

/// Rows for `dirs`, each folder's error in place of its row.
pub fn summarize_all(dirs: &[PathBuf]) -> Vec<Result<RunRow, String>> {
    dirs.iter().map(|d| summarize(d).with_context(|| d.display().to_string()).map_err(|e| format!("{e:#}"))).collect()
}

fn hm(secs: f64) -> String {
    let m = (secs / 60.0).round() as u64;
    format!("{}h{:02}m", m / 60, m % 60)
}

/// The rows as an aligned text table, then each failed or killed run's detail.
pub fn table(rows: &[Result<RunRow, String>]) -> String {
    let header = [
        "run",
        "model",
        "steps",
        "generations",
        "best",
        "at step",
        "last loss",
        "img/s",
        "time",
        "slowest rank",
        "status",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    let mut notes = Vec::new();
    for row in rows {
        match row {
            Err(e) => notes.push(format!("error: {e}")),
            Ok(r) => {
                let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("-".to_string(), f);
                lines.push(vec![
                    r.dir.display().to_string(),
                    r.model.clone(),
                    r.steps.to_string(),
                    if r.generations == 0 { "-".into() } else { r.generations.to_string() },
                    r.best.as_ref().map_or("-".into(), |(m, v, _)| format!("{m} {v:.4}")),
                    r.best.as_ref().map_or("-".into(), |b| b.2.to_string()),
                    opt(r.last_loss, &|v| format!("{v:.4}")),
                    opt(r.img_per_s, &|v| format!("{v:.1}")),
                    opt(r.wall_s, &hm),
                    r.stragglers
                        .first()
                        .map_or("-".into(), |(rank, n)| format!("{rank} ({n}/{} intervals)", r.judged_intervals)),
                    r.status.clone(),
                ]);
                if let Some(d) = &r.detail {
                    notes.push(format!("{}: {} — {d}", r.dir.display(), r.status));
                }
            }
        }
    }
    let widths: Vec<usize> =
        (0..header.len()).map(|c| lines.iter().map(|l| l[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = l.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    for n in notes {
        out.push_str(&n);
        out.push('\n');
    }
    out
}
