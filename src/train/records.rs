//! `metrics.jsonl`: one typed [`Record`] per line, appended by rank 0 while training
//! and read back by `curves.rs` and `segzoo runs summary`. A resumed run appends to the
//! same file after dropping the records of the steps it redoes (those after its
//! checkpoint), so every step is there once; each start leaves a [`StartRecord`]. The
//! same records go to TensorBoard as scalars (`tb/`, [`Record::scalars`]).
use crate::eval::score::Score;
use crate::tensorboard::EventWriter;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// The mean of the last `log.interval` steps.
    Train(TrainRecord),
    Eval(EvalRecord),
    /// A (re)start of training: one per generation of an elastic or restarted job.
    Start(StartRecord),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartRecord {
    /// The step it starts after (0: from scratch).
    pub step: u64,
    pub world_size: usize,
    pub global_batch: usize,
    pub accumulate_steps: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRecord {
    /// 1-based.
    pub epoch: usize,
    pub step: u64,
    #[serde(with = "crate::eval::score::nan_as_null")]
    pub loss: f64,
    pub lr: f64,
    pub ms_per_step: f64,
    pub img_per_s: f64,
    /// Means over the interval of the step's parts (they add up to about `ms_per_step`):
    /// waiting for data, forward+backward, gradient communication backward did not
    /// hide, and the optimiser.
    #[serde(default)]
    pub data_wait_ms: f64,
    #[serde(default)]
    pub compute_ms: f64,
    #[serde(default)]
    pub comm_ms: f64,
    #[serde(default)]
    pub optimizer_ms: f64,
    /// Estimated seconds to the end of training, evaluations included.
    #[serde(default)]
    pub eta_s: f64,
    /// Resident set of the process now, and the peak memory (CUDA: the allocator's peak;
    /// else the resident set's).
    #[serde(default)]
    pub rss_mb: f64,
    #[serde(default)]
    pub peak_mem_mb: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_max_allocated_mb: Option<f64>,
    /// Ranks training at this step (0 in records from before segzoo wrote it).
    #[serde(default)]
    pub world_size: usize,
    /// Each weighted head's own loss (models with several heads).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub head_loss: BTreeMap<String, f64>,
    /// fp16: the loss scale after this step, and the steps skipped on overflow so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_steps: Option<u64>,
    /// Several ranks: each rank's own time per step over the interval, the slowest rank's
    /// time over the median of the others', and the rank named slow (`straggler.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranks: Vec<super::straggler::RankTimes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub straggler_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub straggler: Option<super::straggler::Straggler>,
}

impl Record {
    pub fn step(&self) -> u64 {
        match self {
            Record::Train(t) => t.step,
            Record::Eval(e) => e.step,
            Record::Start(s) => s.step,
        }
    }

    /// The record as TensorBoard scalars; `class_names` label the per-class IoUs.
    pub fn scalars(&self, class_names: &[String]) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = Vec::new();
        match self {
            Record::Train(t) => {
                out.push(("train/loss".into(), t.loss));
                out.extend(t.head_loss.iter().map(|(h, v)| (format!("train/loss/{h}"), *v)));
                for (tag, v) in [
                    ("train/lr", t.lr),
                    ("train/img_per_s", t.img_per_s),
                    ("train/ms_per_step", t.ms_per_step),
                    ("train/data_wait_ms", t.data_wait_ms),
                    ("train/compute_ms", t.compute_ms),
                    ("train/comm_exposed_ms", t.comm_ms),
                    ("train/optimizer_ms", t.optimizer_ms),
                    ("train/eta_s", t.eta_s),
                    ("sys/rss_mb", t.rss_mb),
                    ("sys/world_size", t.world_size as f64),
                ] {
                    out.push((tag.into(), v));
                }
                if let Some(mb) = t.cuda_max_allocated_mb {
                    out.push(("sys/cuda_max_allocated_mb".into(), mb));
                }
                if let Some(scale) = t.loss_scale {
                    out.push(("train/loss_scale".into(), scale));
                }
                if let Some(ratio) = t.straggler_ratio {
                    out.push(("dist/straggler_ratio".into(), ratio));
                }
            }
            Record::Eval(e) => match &e.score {
                Score::Seg(m) => {
                    out.push(("val/miou".into(), m.miou));
                    out.push(("val/pixel_acc".into(), m.pixel_acc));
                    out.push(("val/mean_class_acc".into(), m.mean_class_acc));
                    for (i, iou) in m.iou.iter().enumerate() {
                        // An absent class has no IoU: no point rather than a NaN.
                        if iou.is_finite() {
                            // Tags without spaces ("traffic light" → traffic_light), as TensorFlow makes them.
                            let name = class_names.get(i).map_or_else(|| format!("class_{i}"), |n| n.replace(' ', "_"));
                            out.push((format!("val/iou/{name}"), *iou));
                        }
                    }
                }
                Score::Cls(c) => {
                    out.push(("val/top1".into(), c.top1));
                    out.push(("val/top5".into(), c.top5));
                }
            },
            Record::Start(_) => {}
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Epochs completed (1-based).
    pub epoch: usize,
    pub step: u64,
    #[serde(flatten)]
    pub score: Score,
}

/// Appends records to `metrics.jsonl` and, once started, TensorBoard (rank 0 only:
/// no-ops elsewhere).
pub struct MetricsLog {
    file: Option<std::fs::File>,
    path: std::path::PathBuf,
    tb: Option<EventWriter>,
    class_names: Vec<String>,
}

impl MetricsLog {
    /// Open `path` for appending on rank 0; a no-op log elsewhere.
    pub fn open(path: &Path, writer: bool, class_names: Vec<String>) -> anyhow::Result<Self> {
        let file = if writer { Some(append(path)?) } else { None };
        Ok(MetricsLog { file, path: path.to_path_buf(), tb: None, class_names })
    }

    /// Drop the records after `step` (a resumed run redoes those steps), keeping the file
    /// otherwise as it was; rank 0 only, before it appends.
    pub fn keep_through(&mut self, step: u64) -> anyhow::Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        let path = self.path.clone();
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let later = |line: &str| serde_json::from_str::<Record>(line).is_ok_and(|r| r.step() > step);
        if !text.lines().any(later) {
            return Ok(());
        }
        let kept: String = text.lines().filter(|l| !later(l)).map(|l| format!("{l}\n")).collect();
        file.sync_all().ok();
        crate::atomic::write_bytes(&path, kept.as_bytes())?;
        // The append handle still points at the replaced file: reopen.
        self.file = Some(append(&path)?);
        Ok(())
    }

    /// Also write TensorBoard events to `dir`, keeping those up to `resumed_at` from
    /// earlier runs (rank 0 only).
    pub fn start_tensorboard(&mut self, dir: &Path, resumed_at: u64) -> anyhow::Result<()> {
        if self.file.is_some() {
            let writer = EventWriter::open(dir, resumed_at)?;
            tracing::info!("TensorBoard events: {} (tensorboard --logdir {})", writer.path().display(), dir.display());
            self.tb = Some(writer);
        }
        Ok(())
    }

    /// A failed append is a warning: losing a log line must not stop training.
    pub fn write(&mut self, record: &Record) {
        if let Some(f) = &mut self.file {
            let line = serde_json::to_string(record).unwrap_or_default();
            if let Err(e) = writeln!(f, "{line}") {
                tracing::warn!("cannot append to metrics.jsonl: {e}");
            }
        }
        if let Some(tb) = &mut self.tb {
            if let Err(e) = tb.scalars(record.step(), &record.scalars(&self.class_names)) {
                tracing::warn!("cannot append to the TensorBoard events: {e:#}");
            }
        }
    }

    /// An image in TensorBoard (if it is on).
    pub fn image(&mut self, step: u64, tag: &str, img: &image::RgbImage) {
        if let Some(tb) = &mut self.tb {
            if let Err(e) = tb.image(step, tag, img) {
                tracing::warn!("cannot append an image to the TensorBoard events: {e:#}");
            }
        }
    }

    pub fn tensorboard_on(&self) -> bool {
        self.tb.is_some()
    }
}

/// Every record of a `metrics.jsonl`; lines that are not records (a line cut short by a
/// crash) are skipped.
fn append(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

pub fn read(path: &Path) -> anyhow::Result<Vec<Record>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::metrics::SegMetrics;
    use crate::eval::score::ClsScore;

    fn train_record(cuda_max_allocated_mb: Option<f64>) -> TrainRecord {
        TrainRecord {
            epoch: 1,
            step: 10,
            loss: 1.5,
            lr: 0.01,
            ms_per_step: 20.0,
            img_per_s: 4.0,
            data_wait_ms: 1.0,
            compute_ms: 15.0,
            comm_ms: 1.5,
            optimizer_ms: 2.0,
            eta_s: 60.0,
            rss_mb: 100.0,
            peak_mem_mb: 120.0,
            cuda_max_allocated_mb,
            world_size: 2,
            head_loss: BTreeMap::from([("aux".to_string(), 1.25)]),
            loss_scale: None,
            skipped_steps: None,
            ranks: Vec::new(),
            straggler_ratio: None,
            straggler: None,
        }
    }

    #[test]
    fn records_round_trip_through_json_lines_with_nan_as_null() {
        let seg = SegMetrics {
            miou: 0.5,
            iou: vec![0.25, f64::NAN, 0.75],
            pixel_acc: 0.9,
            mean_class_acc: 0.6,
            class_names: Vec::new(),
            confusion: Vec::new(),
        };
        let records = [
            Record::Train(train_record(None)),
            Record::Eval(EvalRecord { epoch: 1, step: 10, score: Score::Seg(seg) }),
            Record::Eval(EvalRecord {
                epoch: 2,
                step: 20,
                score: Score::Cls(ClsScore { top1: 0.5, top5: 0.75, images: 8 }),
            }),
        ];
        let lines: Vec<String> = records.iter().map(|r| serde_json::to_string(r).expect("serialises")).collect();
        assert!(lines[0].starts_with(r#"{"kind":"train","epoch":1,"step":10,"loss":1.5"#), "{}", lines[0]);
        assert!(lines[1].contains(r#""iou":[0.25,null,0.75]"#), "{}", lines[1]);
        assert!(lines[2].contains(r#""kind":"eval""#) && lines[2].contains(r#""top1":0.5"#), "{}", lines[2]);
        let back: Vec<Record> = lines.iter().map(|l| serde_json::from_str(l).expect("parses")).collect();
        match &back[1] {
            Record::Eval(EvalRecord { score: Score::Seg(m), .. }) => {
                assert_eq!(m.iou[0], 0.25);
                assert!(m.iou[1].is_nan());
            }
            other => panic!("expected a segmentation eval record, got {other:?}"),
        }
        assert_eq!(back[0], records[0]);
        assert_eq!(back[2], records[2]);
        // Lines written before the breakdown fields existed still read.
        let old = r#"{"kind":"train","epoch":1,"step":10,"loss":1.5,"lr":0.01,"ms_per_step":20.0,"img_per_s":4.0}"#;
        let Record::Train(t) = serde_json::from_str::<Record>(old).expect("old line parses") else { panic!() };
        assert_eq!((t.data_wait_ms, t.head_loss.len()), (0.0, 0));
    }

    #[test]
    fn a_resume_drops_the_records_of_the_steps_it_redoes_and_appends_after_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::open(&path, true, Vec::new()).expect("open");
        for step in 1..=5 {
            log.write(&Record::Train(TrainRecord { step, ..train_record(None) }));
        }
        std::fs::OpenOptions::new().append(true).open(&path).expect("open").write_all(b"not json\n").expect("write");
        let mut log = MetricsLog::open(&path, true, Vec::new()).expect("reopen");
        log.keep_through(3).expect("keep");
        log.write(&Record::Start(StartRecord { step: 3, world_size: 1, global_batch: 4, accumulate_steps: 2 }));
        log.write(&Record::Train(TrainRecord { step: 4, ..train_record(None) }));
        let steps: Vec<(String, u64)> = read(&path)
            .expect("read")
            .iter()
            .map(|r| (serde_json::to_value(r).expect("json")["kind"].as_str().unwrap_or("").to_string(), r.step()))
            .collect();
        let want = [("train", 1), ("train", 2), ("train", 3), ("start", 3), ("train", 4)];
        assert_eq!(steps, want.map(|(k, s)| (k.to_string(), s)));
        assert!(std::fs::read_to_string(&path).expect("text").contains("not json"), "what it cannot read is kept");
    }

    #[test]
    fn scalars_name_heads_and_classes_and_skip_absent_classes() {
        let train = Record::Train(train_record(Some(512.0)));
        let tags: Vec<String> = train.scalars(&[]).into_iter().map(|(t, _)| t).collect();
        for want in [
            "train/loss",
            "train/loss/aux",
            "train/lr",
            "train/data_wait_ms",
            "sys/cuda_max_allocated_mb",
            "sys/world_size",
        ] {
            assert!(tags.iter().any(|t| t == want), "{want} missing from {tags:?}");
        }
        let seg = SegMetrics {
            miou: 0.5,
            iou: vec![0.25, f64::NAN],
            pixel_acc: 0.9,
            mean_class_acc: 0.6,
            class_names: Vec::new(),
            confusion: Vec::new(),
        };
        let eval = Record::Eval(EvalRecord { epoch: 1, step: 10, score: Score::Seg(seg) });
        let scalars = eval.scalars(&["road".to_string(), "sky".to_string()]);
        assert!(scalars.contains(&("val/iou/road".to_string(), 0.25)), "{scalars:?}");
        assert!(!scalars.iter().any(|(t, _)| t == "val/iou/sky"), "{scalars:?}");
        assert!(scalars.contains(&("val/miou".to_string(), 0.5)));
    }
}
