//! `segzoo eval` (a checkpoint on the val list, sharded over a job's ranks) and
//! `segzoo eval-preds` (prediction PNGs made elsewhere).
use super::output::write_json;
use super::{config_with, fail_together, parse_device, Output};
use crate::config::DatasetKind;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct EvalArgs {
    #[arg(long)]
    config: PathBuf,
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[arg(long, value_parser = parse_device)]
    device: Option<tch::Device>,
    /// Also write every figure as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Image scales, e.g. 0.5,0.75,1.0,1.25,1.5,1.75 (default: eval.scales).
    #[arg(long, value_delimiter = ',')]
    scales: Option<Vec<f64>>,
    /// Add the mirrored image's prediction.
    #[arg(long)]
    flip: bool,
    /// Sliding-window inference (tiles of eval.crop_size, default data.crop_size).
    #[arg(long)]
    sliding: bool,
    /// Forward precision: fp32, or autocast to bf16/fp16 (CUDA); default eval.precision.
    #[arg(long, value_enum)]
    precision: Option<super::bench::InferPrecision>,
}

pub fn eval(args: EvalArgs) -> anyhow::Result<Output> {
    let mut cfg = config_with(&args.config, &args.set)?;
    if let Some(scales) = args.scales {
        anyhow::ensure!(!scales.is_empty() && scales.iter().all(|&s| s > 0.0), "--scales must be positive numbers");
        cfg.eval.scales = scales;
    }
    cfg.eval.flip |= args.flip;
    cfg.eval.sliding |= args.sliding;
    if let Some(p) = args.precision {
        cfg.eval.precision = p.into();
    }
    let (_, device, comm) = crate::distributed::join(args.device, &cfg.dist, None)?;
    crate::distributed::device::cudnn_autotune(device, cfg.eval.cudnn_benchmark);
    let start = std::time::Instant::now();
    let evaluated = crate::app::evaluation::evaluate_checkpoint(&cfg, &args.checkpoint, device, comm.as_ref());
    let (tally, images) = fail_together(&comm, evaluated)?;
    let secs = start.elapsed().as_secs_f64();
    if comm.rank() != 0 {
        return Ok(Output::none());
    }
    let score = tally.score(&crate::app::classes(&cfg.data).names);
    let mut out = Output::text(format!("{score}\n"));
    out.line(format!("evaluated {images} images in {secs:.1} s ({:.2} img/s)", images as f64 / secs.max(1e-9)));
    if let Some(path) = &args.json {
        write_json(path, &score)?;
    }
    Ok(out)
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PredIds {
    Trainid,
    Labelid,
}

#[derive(Args)]
pub struct EvalPredsArgs {
    #[arg(long)]
    dataset: DatasetKind,
    /// Folder of `<image name>.png` predictions.
    #[arg(long)]
    pred_dir: PathBuf,
    /// The list of `image label` pairs.
    #[arg(long)]
    list: PathBuf,
    /// Root the list's paths are relative to (default: the list's folder).
    #[arg(long)]
    root: Option<PathBuf>,
    /// What the predictions hold: train ids, or Cityscapes label ids.
    #[arg(long, value_enum, default_value = "trainid")]
    pred_ids: PredIds,
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn eval_preds(args: EvalPredsArgs) -> anyhow::Result<Output> {
    let root = args.root.unwrap_or_else(|| args.list.parent().map(PathBuf::from).unwrap_or_default());
    let label_ids = args.pred_ids == PredIds::Labelid;
    let m = crate::eval::preds::evaluate(args.dataset.into(), &root, &args.list, &args.pred_dir, label_ids)?;
    if let Some(path) = &args.json {
        write_json(path, &m)?;
    }
    Ok(Output::text(format!("{}\n{}", m.recipe_lines(), m.table())))
}
