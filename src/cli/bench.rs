//! `segzoo bench train` (the training step on synthetic tensors) and `segzoo bench data`
//! (the training input pipeline).
use super::{config_with, fail_together, parse_device, Output};
use crate::config::Config;
use crate::data::dataset::{Dataset, Split};
use crate::data::{loader, sampler::ShardedSampler};
use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Training-step throughput (forward + backward + optimiser) on synthetic tensors of the crop size.
    Train {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value_t = 10)]
        steps: usize,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long, value_parser = parse_device)]
        device: Option<tch::Device>,
    },
    /// Training-pipeline throughput: decode + augment + collate, on the config's train list.
    Data {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long, default_value_t = 20)]
        batches: usize,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<Output> {
    match cmd {
        BenchCommand::Train { config, steps, set, device } => bench_train(&config_with(&config, &set)?, steps, device),
        BenchCommand::Data { config, threads, batches, set } => {
            bench_data(&config_with(&config, &set)?, threads, batches)
        }
    }
}

/// Every rank of the job steps; rank 0 reports, with the exposed communication under mpirun.
fn bench_train(cfg: &Config, steps: usize, device: Option<tch::Device>) -> anyhow::Result<Output> {
    let (_, device, comm) = crate::dist::join(device, &cfg.dist, None)?;
    let (rank, size) = (comm.rank(), comm.size());
    let r = fail_together(&comm, crate::train::bench::bench(cfg, steps, device, comm.clone()))?;
    if rank != 0 {
        return Ok(Output::none());
    }
    let [h, w] = cfg.data.crop_size;
    let mut out = Output::text(format!(
        "bench train: {} on {device:?}, batch {} of {h}×{w}, {:?}: {:.1} ms/step, {:.2} img/s\n",
        cfg.model.name, cfg.train.batch_size, r.memory_format, r.ms_per_step, r.img_per_s
    ));
    if size > 1 {
        let how = if r.overlap { "overlapped with backward" } else { "after backward" };
        out.line(format!(
            "gradient all-reduce over {size} ranks ({} backend, {how}): {:.1} ms/step exposed after backward",
            comm.kind(),
            r.exposed_comm_ms
        ));
    }
    Ok(out)
}

/// Batches of the training pipeline, timed after one warm-up batch.
fn bench_data(cfg: &Config, threads: usize, batches: usize) -> anyhow::Result<Output> {
    let ds: Arc<dyn Dataset> = crate::app::dataset(&cfg.data, Split::Train)?.into();
    let bs = cfg.train.batch_size;
    let mut indices = Vec::new();
    let mut epoch = 0;
    while indices.len() < (batches + 1) * bs {
        indices.extend(ShardedSampler::train(ds.len(), 1, 0, cfg.train.seed).indices(epoch));
        epoch += 1;
    }
    indices.truncate((batches + 1) * bs);
    let opts = loader::LoaderOptions {
        batch_size: bs,
        workers: threads,
        prefetch: cfg.data.prefetch,
        drop_last: true,
        seed: cfg.train.seed,
    };
    let mut it = loader::epoch(ds, &indices, 0, &opts);
    let first = it.next().context("no batch")??;
    let shape = first.images.size();
    let start = std::time::Instant::now();
    let mut n = 0;
    for b in it {
        b?;
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(Output::text(format!(
        "bench data: {threads} threads, {n} batches of {shape:?}: {:.1} ms/batch, {:.2} img/s\n",
        1000.0 * secs / n.max(1) as f64,
        (n * bs) as f64 / secs
    )))
}
