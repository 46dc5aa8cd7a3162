//! `segzoo bench train`: the training step of `step.rs` on synthetic tensors of the
//! config's crop size, timed after two warm-up steps; under mpirun every rank steps and
//! the gradient communication backward did not hide is measured.
use super::build::{build_loss, build_optimizer, build_scaler, build_train_model};
use super::data_parallel::DataParallel;
use super::step::{train_step, StepContext};
use crate::config::Config;
use crate::distributed::device::synchronize;
use crate::models::memory_format::{to_format, MemoryFormat};
use crate::models::Task;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Milliseconds per step, images per second of the whole job, the milliseconds per step
/// spent waiting for gradient communication after backward ended, and the peak memory.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct BenchResult {
    pub ms_per_step: f64,
    pub img_per_s: f64,
    pub exposed_comm_ms: f64,
    /// Whether the all-reduce was overlapped with backward.
    pub overlap: bool,
    pub memory_format: MemoryFormat,
    /// The CUDA allocator's peak on a GPU, the process's peak resident set on the CPU.
    pub peak_mem_mb: f64,
    /// fp16: steps the loss scaler skipped (overflow), warm-up included.
    pub skipped_steps: u64,
}

pub fn bench(
    cfg: &Config,
    steps: usize,
    device: Device,
    comm: crate::distributed::Comm,
) -> anyhow::Result<BenchResult> {
    crate::distributed::device::cudnn_autotune(device, cfg.train.cudnn_benchmark);
    tch::manual_seed(cfg.train.seed as i64);
    let (model, memory_format) = build_train_model(cfg, device)?;
    let mut optim = build_optimizer(cfg, &model);
    let loss = build_loss(cfg, &model)?;
    let mut dp = DataParallel::new(comm, cfg.dist.bucket_mb, device);
    dp.broadcast_state(&model)?;
    // A benchmark has no run length: PowerSGD from the first step unless the config says.
    dp.set_compression(&cfg.dist, 0, cfg.train.seed);
    let overlap = cfg.dist.overlap && dp.enable_overlap(&optim.params)?;
    let ctx = StepContext { model: &model, loss: &loss, precision: cfg.train.precision, dp: &dp, memory_format };
    let mut scaler = build_scaler(cfg);
    let [h, w] = cfg.data.crop_size.map(|v| v as i64);
    let bs = cfg.train.batch_size as i64;
    // In the step's layout already, so that the timing leaves out a conversion the data
    // pipeline's batches pay for (a copy of the input, small beside the step).
    let x = to_format(&Tensor::randn([bs, 3, h, w], (Kind::Float, device)), memory_format);
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
    dp.barrier()?;
    let start = Instant::now();
    let mut marks = Vec::with_capacity(steps);
    for _ in 0..steps {
        marks.push(one()?.marks);
    }
    synchronize(device);
    let secs = start.elapsed().as_secs_f64();
    let exposed: f64 = marks.iter().map(|m| m.parts().exposed_comm.as_secs_f64()).sum();
    let per_step = |s: f64| 1000.0 * s / steps.max(1) as f64;
    let images = (steps * cfg.train.accumulate_steps * dp.size()) as f64 * bs as f64;
    Ok(BenchResult {
        ms_per_step: per_step(secs),
        img_per_s: images / secs.max(1e-9),
        exposed_comm_ms: per_step(exposed),
        overlap,
        memory_format,
        peak_mem_mb: super::memory::sample(device).peak_mb(),
        skipped_steps: scaler.as_ref().map_or(0, |s| s.skipped),
    })
}
