//! `segzoo bench train` (the training step on synthetic tensors) and `segzoo bench data`
//! (the training input pipeline).
use super::{config_with, fail_together, parse_device, write_json, Output};
use crate::config::Config;
use crate::data::dataset::{Dataset, Split};
use crate::data::{loader, sampler::ShardedSampler};
use crate::envinfo::device_name;
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
        /// Also write the figures as JSON (rank 0).
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Forward-pass throughput of the plain form and the deploy form (BatchNorm folded).
    Infer {
        #[arg(long)]
        config: PathBuf,
        /// Input HEIGHTxWIDTH (default: the config's crop size).
        #[arg(long)]
        size: Option<String>,
        #[arg(long, default_value_t = 1)]
        batch: i64,
        /// Intra-op threads (default: libtorch's).
        #[arg(long)]
        threads: Option<i32>,
        /// fp32, or autocast to bf16/fp16 (CUDA).
        #[arg(long, value_enum, default_value = "fp32")]
        precision: InferPrecision,
        /// Time the plain form alone.
        #[arg(long)]
        no_fold: bool,
        #[arg(long, default_value_t = 10)]
        iters: usize,
        /// Weights to load (default: the model's initialisation).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long, value_parser = parse_device)]
        device: Option<tch::Device>,
        /// Also write the figures as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
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
        BenchCommand::Train { config, steps, set, device, json } => {
            bench_train(&config_with(&config, &set)?, steps, device, json.as_deref())
        }
        BenchCommand::Infer {
            config,
            size,
            batch,
            threads,
            precision,
            no_fold,
            iters,
            checkpoint,
            set,
            device,
            json,
        } => {
            let cfg = config_with(&config, &set)?;
            let size = match size {
                Some(s) => parse_hw(&s)?,
                None => (cfg.data.crop_size[0] as i64, cfg.data.crop_size[1] as i64),
            };
            let opts =
                InferBenchArgs { size, batch, threads, precision, fold: !no_fold, iters, checkpoint, device, json };
            bench_infer(&cfg, &opts)
        }
        BenchCommand::Data { config, threads, batches, set } => {
            bench_data(&config_with(&config, &set)?, threads, batches)
        }
    }
}

/// Every rank of the job steps; rank 0 reports, with the exposed communication under mpirun.
fn bench_train(
    cfg: &Config,
    steps: usize,
    device: Option<tch::Device>,
    json: Option<&std::path::Path>,
) -> anyhow::Result<Output> {
    let (_, device, comm) = crate::distributed::join(device, &cfg.dist, None)?;
    let (rank, size) = (comm.rank(), comm.size());
    let r = fail_together(&comm, crate::train::bench::bench(cfg, steps, device, comm.clone()))?;
    if rank != 0 {
        return Ok(Output::none());
    }
    let [h, w] = cfg.data.crop_size;
    let mut out = Output::text(format!(
        "bench train: {} on {device:?}, batch {} of {h}×{w}, {:?}, {:?}: {:.1} ms/step, {:.2} img/s, peak memory {:.0} \
         MB\n",
        cfg.model.name,
        cfg.train.batch_size,
        cfg.train.precision,
        r.memory_format,
        r.ms_per_step,
        r.img_per_s,
        r.peak_mem_mb
    ));
    if r.skipped_steps > 0 {
        out.line(format!("fp16 loss scaler: {} step(s) skipped on overflow", r.skipped_steps));
    }
    if size > 1 {
        let how = if r.overlap { "overlapped with backward" } else { "after backward" };
        out.line(format!(
            "gradient all-reduce over {size} ranks ({} backend, {how}): {:.1} ms/step exposed after backward",
            comm.kind(),
            r.exposed_comm_ms
        ));
    }
    if let Some(path) = json {
        write_json(
            path,
            &BenchTrainReport { model: &cfg.model.name, device: device_name(device), ranks: size, result: r },
        )?;
    }
    Ok(out)
}

#[derive(serde::Serialize)]
struct BenchTrainReport<'a> {
    model: &'a str,
    device: String,
    ranks: usize,
    #[serde(flatten)]
    result: crate::train::bench::BenchResult,
}

#[derive(serde::Serialize)]
struct BenchInferReport<'a> {
    model: &'a str,
    device: String,
    threads: i32,
    batch: i64,
    size: [i64; 2],
    precision: crate::config::Precision,
    plain: crate::deploy::bench::InferTiming,
    #[serde(skip_serializing_if = "Option::is_none")]
    deploy: Option<crate::deploy::bench::InferTiming>,
    /// Largest difference of the two forms' outputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    max_diff: Option<f64>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InferPrecision {
    Fp32,
    Bf16,
    Fp16,
}

impl From<InferPrecision> for crate::config::Precision {
    fn from(p: InferPrecision) -> Self {
        match p {
            InferPrecision::Fp32 => Self::Fp32,
            InferPrecision::Bf16 => Self::Bf16,
            InferPrecision::Fp16 => Self::Fp16,
        }
    }
}

struct InferBenchArgs {
    size: (i64, i64),
    batch: i64,
    threads: Option<i32>,
    precision: InferPrecision,
    fold: bool,
    iters: usize,
    checkpoint: Option<PathBuf>,
    device: Option<tch::Device>,
    json: Option<PathBuf>,
}

fn parse_hw(s: &str) -> anyhow::Result<(i64, i64)> {
    let (h, w) = s.split_once(['x', 'X']).with_context(|| format!("--size {s:?}: expected HEIGHTxWIDTH"))?;
    let n = |v: &str| v.trim().parse::<i64>().ok().filter(|&v| v > 0);
    n(h).zip(n(w)).with_context(|| format!("--size {s:?}: sides must be positive integers"))
}

/// The plain form, then (unless `--no-fold`) the deploy form, on one random batch.
fn bench_infer(cfg: &Config, a: &InferBenchArgs) -> anyhow::Result<Output> {
    use crate::config::Precision;
    use crate::deploy::bench::time_forward;
    if let Some(t) = a.threads {
        anyhow::ensure!(t > 0, "--threads must be positive");
        tch::set_num_threads(t);
    }
    let device = a.device.unwrap_or(tch::Device::Cpu);
    crate::distributed::device::cudnn_autotune(device, cfg.eval.cudnn_benchmark);
    anyhow::ensure!(a.batch > 0, "--batch must be positive");
    let model = crate::app::build_model(cfg, device)?;
    if let Some(c) = &a.checkpoint {
        crate::models::weights::load_file(&model, c, crate::models::weights::LoadMode::Strict)?;
    }
    let (h, w) = a.size;
    model.check_input_size(h, w)?;
    let precision: Precision = a.precision.into();
    let x = tch::Tensor::randn([a.batch, 3, h, w], (tch::Kind::Float, device));
    let run = |t: &tch::Tensor| {
        crate::precision::autocast(device, precision, || model.forward_main(t, false)).expect("autocast accepted above")
    };
    let threads = tch::get_num_threads();
    let mut out = Output::text(format!(
        "bench infer: {} on {device:?}, {threads} threads, batch {} of {h}×{w}, {precision:?}\n",
        cfg.model.name, a.batch
    ));
    // Checked once here (libtorch may refuse the precision on this device); `run` repeats it.
    let reference = tch::no_grad(|| crate::precision::autocast(device, precision, || model.forward_main(&x, false)))?;
    let plain = time_forward(&model, &x, a.iters, &run);
    out.line(format!(
        "plain form (BatchNorm separate, NCHW): {:.1} ms/batch, {:.2} img/s",
        plain.ms_per_batch, plain.img_per_s
    ));
    let mut report = BenchInferReport {
        model: &cfg.model.name,
        device: device_name(device),
        threads,
        batch: a.batch,
        size: [h, w],
        precision,
        plain,
        deploy: None,
        max_diff: None,
    };
    if a.fold {
        let folded = crate::deploy::form::into_deploy_form(&model)?;
        let diff = tch::no_grad(|| (run(&x) - &reference).abs().max().double_value(&[]));
        let deploy = time_forward(&model, &x, a.iters, &run);
        out.line(format!(
            "deploy form ({folded} BatchNorms folded, {:?}): {:.1} ms/batch, {:.2} img/s — {:.2}× the plain form; outputs differ by {diff:.1e} at most",
            crate::deploy::form::memory_format(device),
            deploy.ms_per_batch,
            deploy.img_per_s,
            plain.ms_per_batch / deploy.ms_per_batch
        ));
        (report.deploy, report.max_diff) = (Some(deploy), Some(diff));
    }
    if let Some(path) = &a.json {
        write_json(path, &report)?;
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
