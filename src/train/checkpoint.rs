//! Checkpoints: one safetensors file per save holding the model weights (official
//! names under `model.`), the optimiser state (`optim.`) and a JSON record of the run
//! (`meta.json`, as bytes): the training state (step, epoch, best score, fp16 scaler),
//! the last evaluation and the resolved config.
//! Written to a temporary file, fsynced and renamed, so a crash never leaves a
//! half-written checkpoint under a real name. Randomness needs no saved state: data
//! augmentation derives from (seed, epoch, index) and torch's generator is reseeded
//! from (seed, step) every step.
use super::records::EvalRecord;
use super::state::{Best, ScalerState, TrainState};
use crate::config::{Config, DatasetKind};
use crate::models::weights::write_safetensors_atomic;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub format: u32,
    pub segzoo_version: String,
    pub model: String,
    pub num_classes: i64,
    #[serde(flatten)]
    pub state: TrainState,
    /// Format-1 checkpoints written before the typed state: the best mIoU or top-1.
    #[serde(default, skip_serializing)]
    best_miou: Option<f64>,
    /// The last evaluation, if any.
    #[serde(rename = "metrics", default)]
    pub last_eval: Option<EvalRecord>,
    pub config: Config,
}

impl Meta {
    pub fn new(
        model: &str,
        num_classes: i64,
        state: TrainState,
        last_eval: Option<EvalRecord>,
        config: Config,
    ) -> Self {
        Meta {
            format: FORMAT,
            segzoo_version: env!("CARGO_PKG_VERSION").into(),
            model: model.to_string(),
            num_classes,
            state,
            best_miou: None,
            last_eval,
            config,
        }
    }

    /// Fill the typed state from what older checkpoints stored elsewhere: `best_miou`
    /// (which held top-1 for classification) and the scaler as `amp.*` optimiser tensors.
    fn upgrade_legacy(&mut self, optim: &mut HashMap<String, Tensor>) {
        if let (None, Some(value)) = (&self.state.best, self.best_miou.take()) {
            let metric = if self.config.data.dataset == DatasetKind::Imagenet { "top1" } else { "miou" };
            self.state.best = Some(Best { metric: metric.into(), value, step: None });
        }
        let mut take = |k: &str| optim.remove(k).map(|t| t.double_value(&[]));
        if let (Some(scale), Some(good), Some(skipped)) =
            (take("amp.scale"), take("amp.good_steps"), take("amp.skipped"))
        {
            self.state.amp.get_or_insert(ScalerState { scale, good_steps: good as u64, skipped: skipped as u64 });
        }
    }
}

pub struct Loaded {
    pub meta: Meta,
    pub model: Vec<(String, Tensor)>,
    pub optim: HashMap<String, Tensor>,
}

pub fn save(path: &Path, model: &[(String, Tensor)], optim: &[(String, Tensor)], meta: &Meta) -> anyhow::Result<()> {
    let json = serde_json::to_vec(meta).context("serialising checkpoint metadata")?;
    let mut tensors: Vec<(String, Tensor)> = Vec::with_capacity(model.len() + optim.len() + 1);
    tensors.extend(model.iter().map(|(n, t)| (format!("model.{n}"), t.shallow_clone())));
    tensors.extend(optim.iter().map(|(n, t)| (format!("optim.{n}"), t.shallow_clone())));
    tensors.push(("meta.json".into(), Tensor::from_slice(&json)));
    write_safetensors_atomic(&tensors, path)?;
    // Make the rename itself durable.
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

pub fn load(path: &Path) -> anyhow::Result<Loaded> {
    let tensors = Tensor::read_safetensors(path)
        .map_err(|e| anyhow::anyhow!("checkpoint {} is corrupt or not a segzoo checkpoint: {e}", path.display()))?;
    let mut meta = None;
    let (mut model, mut optim) = (Vec::new(), HashMap::new());
    for (name, t) in tensors {
        if name == "meta.json" {
            let bytes = Vec::<u8>::try_from(&t).context("reading meta.json")?;
            meta = Some(
                serde_json::from_slice::<Meta>(&bytes)
                    .with_context(|| format!("checkpoint {}: unreadable meta.json", path.display()))?,
            );
        } else if let Some(n) = name.strip_prefix("model.") {
            model.push((n.to_string(), t));
        } else if let Some(n) = name.strip_prefix("optim.") {
            optim.insert(n.to_string(), t);
        }
    }
    let mut meta: Meta =
        meta.with_context(|| format!("checkpoint {} has no meta.json (weights-only file?)", path.display()))?;
    if meta.format != FORMAT {
        bail!("checkpoint {} has format {}, this segzoo reads format {FORMAT}", path.display(), meta.format);
    }
    meta.upgrade_legacy(&mut optim);
    Ok(Loaded { meta, model, optim })
}

/// The `ckpt_step_<n>.safetensors` files of `dir`, newest first.
pub fn list(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?;
            let step = name.strip_prefix("ckpt_step_")?.strip_suffix(".safetensors")?.parse().ok()?;
            Some((step, p))
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.0));
    out
}

pub fn path_for_step(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("ckpt_step_{step:08}.safetensors"))
}

/// The newest checkpoint of `dir` that loads; broken ones are skipped with a warning.
pub fn latest_valid(dir: &Path) -> Option<(PathBuf, Loaded)> {
    for (_, p) in list(dir) {
        match load(&p) {
            Ok(l) => return Some((p, l)),
            Err(e) => tracing::warn!("skipping {}: {e:#}", p.display()),
        }
    }
    None
}

/// Delete all but the newest `keep` step checkpoints and their ranks' state files (`best`
/// is never touched).
pub fn prune(dir: &Path, keep: usize) {
    for (_, p) in list(dir).into_iter().skip(keep) {
        if let Err(e) = std::fs::remove_file(&p) {
            tracing::warn!("cannot remove old checkpoint {}: {e}", p.display());
        }
        let stem = p.file_stem().map(|s| format!("{}.rank", s.to_string_lossy())).unwrap_or_default();
        for side in std::fs::read_dir(dir).into_iter().flatten().filter_map(|e| e.ok().map(|e| e.path())) {
            if side.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&stem)) {
                let _ = std::fs::remove_file(side);
            }
        }
    }
}

/// Where rank `rank` of `size` keeps its own state beside checkpoint `ckpt` (gradient
/// compression's error buffers differ by rank; rank 0 writes only the shared checkpoint).
pub fn rank_state_path(ckpt: &Path, rank: usize, size: usize) -> PathBuf {
    let stem = ckpt.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    ckpt.with_file_name(format!("{stem}.rank{rank}-of{size}.safetensors"))
}

pub fn save_rank_state(ckpt: &Path, rank: usize, size: usize, tensors: &[(String, Tensor)]) -> anyhow::Result<()> {
    write_safetensors_atomic(tensors, &rank_state_path(ckpt, rank, size))
}

/// This rank's state beside `ckpt`, if it was written for this world size.
pub fn load_rank_state(ckpt: &Path, rank: usize, size: usize) -> anyhow::Result<Option<Vec<(String, Tensor)>>> {
    let path = rank_state_path(ckpt, rank, size);
    if !path.exists() {
        return Ok(None);
    }
    let tensors =
        Tensor::read_safetensors(&path).map_err(|e| anyhow::anyhow!("{}: unreadable: {e}", path.display()))?;
    Ok(Some(tensors))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint as segzoo wrote it before the typed state: `best_miou` in meta.json
    /// and the fp16 scaler as `amp.*` optimiser tensors.
    #[test]
    fn checkpoints_with_the_old_best_miou_and_amp_tensors_still_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.safetensors");
        let mut meta =
            serde_json::to_value(Meta::new("quickstart", 19, TrainState::default(), None, Config::default()))
                .expect("meta json");
        let obj = meta.as_object_mut().expect("object");
        obj.insert("step".into(), 40.into());
        obj.insert("epoch".into(), 3.into());
        obj.insert("best_miou".into(), 0.25.into());
        obj.insert("metrics".into(), serde_json::Value::Null);
        let json = serde_json::to_vec(&meta).expect("bytes");
        let tensors = vec![
            ("model.w".to_string(), Tensor::from_slice(&[1.0f32, 2.0])),
            ("optim.w.momentum".to_string(), Tensor::from_slice(&[0.5f32, 0.5])),
            ("optim.amp.scale".to_string(), Tensor::from(1024.0f64)),
            ("optim.amp.good_steps".to_string(), Tensor::from(7i64)),
            ("optim.amp.skipped".to_string(), Tensor::from(2i64)),
            ("meta.json".to_string(), Tensor::from_slice(&json)),
        ];
        write_safetensors_atomic(&tensors, &path).expect("write");
        let loaded = load(&path).expect("an old checkpoint loads");
        let state = &loaded.meta.state;
        assert_eq!((state.step, state.epoch), (40, 3));
        assert_eq!(state.best, Some(Best { metric: "miou".into(), value: 0.25, step: None }));
        assert_eq!(state.amp, Some(ScalerState { scale: 1024.0, good_steps: 7, skipped: 2 }));
        let mut optim: Vec<&String> = loaded.optim.keys().collect();
        optim.sort();
        assert_eq!(optim, vec!["w.momentum"], "amp.* are scaler state, not optimiser slots");
        // Written again, the state is typed and `best_miou` is gone.
        save(&path, &loaded.model, &[], &loaded.meta).expect("save");
        let written = Tensor::read_safetensors(&path).expect("read");
        let meta = written.iter().find(|(n, _)| n == "meta.json").map(|(_, t)| t).expect("meta.json");
        let text = String::from_utf8(Vec::<u8>::try_from(meta).expect("bytes")).expect("utf8");
        assert!(text.contains(r#""best":{"metric":"miou","value":0.25}"#) && !text.contains("best_miou"), "{text}");
    }
}
