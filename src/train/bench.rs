//! `segzoo bench train`: the training step of `step.rs` on synthetic tensors of the
//! config's crop size, timed after two warm-up steps.
use super::data_parallel::DataParallel;
use super::run::{build_loss, build_optimizer};
use super::step::{train_step, StepContext};
use crate::config::Config;
use crate::dist::device::synchronize;
use crate::models::Task;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Milliseconds per step and images per second of one process.
#[derive(Debug, Clone, Copy)]
pub struct BenchResult {
    pub ms_per_step: f64,
    pub img_per_s: f64,
}

pub fn bench(cfg: &Config, steps: usize, device: Device) -> anyhow::Result<BenchResult> {
    tch::manual_seed(cfg.train.seed as i64);
    let model = crate::app::build_model(cfg, device)?;
    let mut optim = build_optimizer(cfg, &model);
    let loss = build_loss(cfg, &model)?;
    let dp = DataParallel::new(crate::dist::collective::single(), cfg.dist.bucket_mb, device);
    let ctx = StepContext { model: &model, loss: &loss, precision: cfg.train.precision, dp: &dp };
    let mut scaler = super::run::build_scaler(cfg);
    let [h, w] = cfg.data.crop_size.map(|v| v as i64);
    let bs = cfg.train.batch_size as i64;
    let x = Tensor::randn([bs, 3, h, w], (Kind::Float, device));
    let y = match model.task() {
        Task::Segmentation => Tensor::randint(model.num_classes, [bs, h, w], (Kind::Int64, device)),
        Task::Classification => Tensor::randint(model.num_classes, [bs], (Kind::Int64, device)),
    };
    // train.accumulate_steps micro-batches per step, as training runs them.
    let batches: Vec<(Tensor, Tensor)> =
        (0..cfg.train.accumulate_steps).map(|_| (x.shallow_clone(), y.shallow_clone())).collect();
    let mut one = || train_step(&ctx, &mut optim, scaler.as_mut(), &batches, cfg.train.lr);
    for _ in 0..2 {
        one()?;
    }
    synchronize(device);
    let start = Instant::now();
    for _ in 0..steps {
        one()?;
    }
    synchronize(device);
    let secs = start.elapsed().as_secs_f64();
    Ok(BenchResult {
        ms_per_step: 1000.0 * secs / steps.max(1) as f64,
        img_per_s: (steps * cfg.train.accumulate_steps) as f64 * bs as f64 / secs.max(1e-9),
    })
}
