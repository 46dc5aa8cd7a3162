//! What a training run is made of, built from the config: the optimiser, the loss, the
//! model in its training memory format, the fp16 scaler and the learning-rate schedule.
//! Shared by the run (`run.rs`) and `segzoo bench train` (`bench.rs`).
use super::amp::GradScaler;
use super::loss::{Ohem, SegLoss};
use super::optim::{Optimizer, Param};
use super::schedule::LrSchedule;
use crate::config::{Config, MemoryFormatChoice, Precision, Schedule};
use crate::models::memory_format::{set_model_format, MemoryFormat};
use crate::models::Model;
use anyhow::bail;
use tch::{Device, Tensor};

pub fn build_optimizer(cfg: &Config, model: &Model) -> Optimizer {
    let t = &cfg.train;
    let params = model
        .trainable_params()
        .into_iter()
        .map(|(name, tensor)| {
            let decay = !(t.no_decay_bias_norm && tensor.dim() <= 1);
            // As the official trainers' NONBACKBONE_KEYWORDS: a name containing a keyword.
            let head = t.head_keywords.iter().any(|k| name.contains(k.as_str()));
            Param { name, tensor, decay, lr_mult: if head { t.head_lr_mult } else { 1.0 } }
        })
        .collect();
    Optimizer::new(t.optimizer, params, t.momentum, t.nesterov, t.weight_decay, (t.betas[0], t.betas[1]), t.eps)
}

pub fn build_loss(cfg: &Config, model: &Model) -> anyhow::Result<SegLoss> {
    let l = &cfg.train.loss;
    let outputs = model.output_names();
    let head_weights = match &l.head_weights {
        Some(w) if w.len() != outputs.len() => bail!(
            "train.loss.head_weights has {} entries but {} returns {} outputs ({})",
            w.len(),
            model.preset,
            outputs.len(),
            outputs.join(", ")
        ),
        Some(w) => w.clone(),
        None => outputs.iter().map(|n| if *n == "aux" { 0.4 } else { 1.0 }).collect(),
    };
    let class_weights = match &l.class_weights {
        Some(w) if w.len() as i64 != model.num_classes => {
            bail!("train.loss.class_weights has {} entries for {} classes", w.len(), model.num_classes)
        }
        Some(w) => Some(Tensor::from_slice(w)),
        None => None,
    };
    Ok(SegLoss {
        ignore: cfg.data.ignore_label,
        class_weights,
        ohem: l.ohem.then_some(Ohem { thresh: l.ohem_thresh, min_kept: l.ohem_min_kept }),
        head_weights,
        align_corners: model.align_corners(),
    })
}

/// `train.memory_format` on `device`. `auto` is what measured faster on the CPU (docs/deployment.md,
/// channels-last) and what PyTorch recommends for convolutions on CUDA.
pub fn memory_format(cfg: &Config, device: Device) -> MemoryFormat {
    match cfg.train.memory_format {
        MemoryFormatChoice::Contiguous => MemoryFormat::Contiguous,
        MemoryFormatChoice::ChannelsLast => MemoryFormat::ChannelsLast,
        MemoryFormatChoice::Auto if device.is_cuda() => MemoryFormat::ChannelsLast,
        MemoryFormatChoice::Auto => AUTO_CPU,
    }
}

/// The CPU's choice for `auto`. Measured with `segzoo bench train` (HRNetV2-W18-small-v2,
/// batch 2 of 256×512, 2 threads) in three rounds: contiguous 1328/1335/1270 ms/step,
/// channels-last 1447/1316/1095 — no gain beyond this VM's ±25 % noise (docs/deployment.md),
/// so the layout every other path uses.
const AUTO_CPU: MemoryFormat = MemoryFormat::Contiguous;

/// A model for training as `cfg` says, on `device`, in the training memory format (before
/// the optimiser is built, so that its state takes the same layout).
pub fn build_train_model(cfg: &Config, device: Device) -> anyhow::Result<(Model, MemoryFormat)> {
    let model = crate::app::build_model(cfg, device)?;
    let format = memory_format(cfg, device);
    if format != MemoryFormat::Contiguous {
        set_model_format(&model, format);
    }
    Ok((model, format))
}

/// The fp16 loss scaler (static with `train.loss_scale`, else dynamic); none otherwise.
pub fn build_scaler(cfg: &Config) -> Option<GradScaler> {
    (cfg.train.precision == Precision::Fp16)
        .then(|| cfg.train.loss_scale.map_or_else(GradScaler::dynamic, GradScaler::fixed))
}

pub fn build_schedule(cfg: &Config, steps_per_epoch: u64) -> anyhow::Result<LrSchedule> {
    let t = &cfg.train;
    if t.schedule == Schedule::MultiStep && t.milestones.is_empty() {
        bail!("train.schedule = \"multi_step\" needs train.milestones (epochs)");
    }
    Ok(LrSchedule {
        base_lr: t.lr,
        min_lr: t.min_lr,
        kind: t.schedule,
        total_iters: steps_per_epoch * t.epochs as u64,
        power: t.power,
        milestones: t.milestones.iter().map(|&e| e as u64 * steps_per_epoch).collect(),
        gamma: t.gamma,
        warmup_iters: t.warmup_iters as u64,
        warmup: t.warmup,
        warmup_ratio: t.warmup_ratio,
    })
}
