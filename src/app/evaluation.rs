//! Evaluation as a job runs it: each rank takes its shard of the config's val list (no
//! image twice, none left out), the tallies are summed over the ranks, so every rank
//! holds the whole set's score. Serves evaluation while training and `segzoo eval`.
use crate::config::Config;
use crate::data::dataset::{Dataset, Split};
use crate::data::loader::LoaderOptions;
use crate::data::sampler::ShardedSampler;
use crate::distributed::Collective;
use crate::eval::evaluate::{self, Tally};
use crate::eval::inference::InferenceOptions;
use crate::models::weights::{load_file, LoadMode};
use crate::models::Model;
use std::path::Path;
use std::sync::Arc;
use tch::Device;

/// Evaluate a checkpoint (or weights file) on the config's val list with the `[eval]`
/// inference modes (scales, flip, sliding window), sharded over the ranks of `comm`;
/// returns the whole set's tally (on every rank) and its image count.
pub fn evaluate_checkpoint(
    cfg: &Config,
    weights: &Path,
    device: Device,
    comm: &dyn Collective,
) -> anyhow::Result<(Tally, usize)> {
    let model = crate::app::build_model(cfg, device)?;
    // Training checkpoints and weights-only files (safetensors or .pth) alike.
    load_file(&model, weights, LoadMode::Strict)?;
    // The deploy form: BatchNorm folded into the convolutions (eval only).
    crate::deploy::form::into_deploy_form(&model)?;
    let modes = crate::app::inference_options(cfg, &model);
    evaluate_sharded(cfg, &model, comm, &modes, comm.rank() == 0)
}

/// `model` on this rank's shard of the config's val list, the tallies summed over the
/// ranks; returns the whole set's tally and size.
pub fn evaluate_sharded(
    cfg: &Config,
    model: &Model,
    comm: &dyn Collective,
    modes: &InferenceOptions,
    progress: bool,
) -> anyhow::Result<(Tally, usize)> {
    let val: Arc<dyn Dataset> = crate::app::dataset(&cfg.data, Split::Val)?.into();
    let total = val.len();
    let indices = ShardedSampler::eval(total, comm.size(), comm.rank()).indices(0);
    let opts = LoaderOptions {
        batch_size: cfg.eval.batch_size,
        workers: cfg.data.num_workers.max(1),
        prefetch: cfg.data.prefetch.max(1),
        drop_last: false,
        seed: 0,
    };
    let mut tally = evaluate::run(model, val, &indices, &opts, cfg.data.ignore_label, modes, progress)?;
    tally.all_reduce(comm, model.device())?;
    Ok((tally, total))
}
