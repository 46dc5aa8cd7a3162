//! `segzoo train`: one device, or one rank of a data-parallel job (mpirun / segzoo-launch).
use super::{config_with, fail_together, parse_device, Output};
use crate::train::{Resume, TrainOptions};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct TrainArgs {
    #[arg(long)]
    config: PathBuf,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// `auto` (newest valid checkpoint of the run, if any) or a checkpoint file.
    #[arg(long)]
    resume: Option<String>,
    /// Start at this epoch (0-based), schedule included, as the recipes' --begin_epoch.
    #[arg(long)]
    begin_epoch: Option<usize>,
    /// Stop after this many steps in total, saving a checkpoint.
    #[arg(long)]
    max_steps: Option<u64>,
    /// cpu or cuda:N (default: this rank's GPU when CUDA is available, else the CPU).
    #[arg(long, value_parser = parse_device)]
    device: Option<tch::Device>,
}

pub fn run(args: TrainArgs) -> anyhow::Result<Output> {
    let cfg = config_with(&args.config, &args.set)?;
    let resume = args.resume.map(|r| if r == "auto" { Resume::Auto } else { Resume::Path(PathBuf::from(r)) });
    let (_, device, comm) = crate::distributed::join(args.device, &cfg.dist, Some(&cfg.train.output_dir))?;
    let opts =
        TrainOptions { resume, begin_epoch: args.begin_epoch, max_steps: args.max_steps, device, comm: comm.clone() };
    let summary = fail_together(&comm, crate::train::train(&cfg, &opts))?;
    if comm.rank() != 0 {
        return Ok(Output::none());
    }
    let mut out = Output::none();
    out.line(format!("trained {} steps, last loss {:.4}", summary.steps, summary.last_loss));
    if let Some(b) = &summary.best {
        out.line(format!("best score {:.4}", b.value));
    }
    if let Some(p) = &summary.last_checkpoint {
        out.line(format!("last checkpoint {}", p.display()));
    }
    Ok(out)
}
