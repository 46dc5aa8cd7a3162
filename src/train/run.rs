//! Building a training run of one rank (alone, or one of a data-parallel group): the
//! model, optimiser, schedule, loss and data from the config; restoring a checkpoint
//! or pretrained weights; saving checkpoints and evaluating. The loop is `fit.rs`.
use super::amp::GradScaler;
use super::breakdown::Eta;
use super::build::{build_loss, build_optimizer, build_scaler, build_schedule, build_train_model};
use super::checkpoint::{self, Meta};
use super::data_parallel::DataParallel;
use super::loss::SegLoss;
use super::optim::Optimizer;
use super::position;
use super::records::{EvalRecord, MetricsLog, Record, StartRecord};
use super::schedule::LrSchedule;
use super::state::{Best, ScalerState, TrainState};
use super::status::StatusFile;
use crate::config::Config;
use crate::data::dataset::{Dataset, Split};
use crate::data::rng::derive;
use crate::data::sampler::ShardedSampler;
use crate::distributed::Comm;
use crate::eval::inference::InferenceOptions;
use crate::models::memory_format::MemoryFormat;
use crate::models::weights::{load_into, LoadMode};
use crate::models::Model;
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tch::Device;

#[derive(Debug, Clone, PartialEq)]
pub enum Resume {
    /// The newest valid checkpoint in the run's checkpoint folder, if any.
    Auto,
    Path(PathBuf),
}

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub resume: Option<Resume>,
    /// Start at this epoch (schedule position included), as the recipes' `--begin_epoch`.
    pub begin_epoch: Option<usize>,
    /// Stop (with a checkpoint) after this many steps in total.
    pub max_steps: Option<u64>,
    pub device: Device,
    /// The job's collective group ([`crate::distributed::collective::single`] when alone).
    pub comm: Comm,
}

#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub steps: u64,
    pub last_loss: f64,
    pub best: Option<Best>,
    /// The last evaluation, if any.
    pub last_eval: Option<EvalRecord>,
    pub last_checkpoint: Option<PathBuf>,
}

/// One rank's run: everything the loop reads and updates.
pub(super) struct Run<'a> {
    pub cfg: &'a Config,
    pub model: Model,
    pub optim: Optimizer,
    pub schedule: LrSchedule,
    pub loss: SegLoss,
    pub train_ds: Arc<dyn Dataset>,
    pub sampler: ShardedSampler,
    pub dp: DataParallel,
    /// Images per optimiser step over the job (`position.rs`).
    pub global_batch: usize,
    /// Whole steps of `global_batch` in an epoch.
    pub steps_per_epoch: u64,
    pub state: TrainState,
    pub scaler: Option<GradScaler>,
    /// The layout of the model's 4-D tensors and of the input batches.
    pub memory_format: MemoryFormat,
    pub ckpt_dir: PathBuf,
    pub log: MetricsLog,
    pub last_checkpoint: Option<PathBuf>,
    pub last_eval: Option<EvalRecord>,
    /// The weighted heads' names when there are several (their losses are logged apart).
    pub head_names: Vec<String>,
    pub eta: Eta,
    /// How long the last evaluation took, for the ETA.
    pub last_eval_secs: Option<f64>,
    /// The val list's length, read once for the ETA's first estimate.
    pub val_len: Option<usize>,
}

/// Train as `cfg` describes, from scratch, pretrained weights or a checkpoint.
pub fn train(cfg: &Config, opts: &TrainOptions) -> anyhow::Result<TrainSummary> {
    let status = StatusFile::begin(&cfg.train.output_dir, opts.comm.rank() == 0);
    let result = (|| {
        let cfg = &position::resolve(cfg, opts.comm.size())?;
        let mut run = Run::new(cfg, opts)?;
        run.restore(opts)?;
        run.fit(opts)
    })();
    status.end(&result);
    result
}

impl<'a> Run<'a> {
    fn new(cfg: &'a Config, opts: &TrainOptions) -> anyhow::Result<Self> {
        let out = &cfg.train.output_dir;
        let mut dp = DataParallel::new(opts.comm.clone(), cfg.dist.bucket_mb, opts.device);
        if dp.is_root() {
            std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
            std::fs::write(out.join("config.toml"), toml::to_string(cfg)?).context("writing the resolved config")?;
        }
        let train_ds: Arc<dyn Dataset> = crate::app::dataset(&cfg.data, Split::Train)?.into();
        // train.batch_size is per rank, as in the recipes: the global batch of an optimiser
        // step is batch_size × accumulate_steps × ranks (train.global_batch fixes it).
        let global_batch = position::global_batch(cfg, dp.size());
        let sampler = ShardedSampler::train(train_ds.len(), dp.size(), dp.rank(), cfg.train.seed);
        let steps_per_epoch = position::steps_left(train_ds.len(), 0, global_batch);
        if steps_per_epoch == 0 {
            let accumulate = match cfg.train.accumulate_steps {
                1 => String::new(),
                k => format!(" × train.accumulate_steps = {k}"),
            };
            bail!(
                "the train list has {} samples, fewer than train.batch_size = {}{accumulate} × {} rank(s)",
                train_ds.len(),
                cfg.train.batch_size,
                dp.size()
            );
        }
        if !dp.alone() {
            tracing::info!(
                "data parallel over {} ranks ({} backend): global batch {global_batch} (accumulation {}), {} \
                 steps per epoch",
                dp.size(),
                dp.comm.kind(),
                cfg.train.accumulate_steps,
                steps_per_epoch
            );
        } else if cfg.train.global_batch.is_some() {
            tracing::info!(
                "one rank: global batch {global_batch} (accumulation {}), {steps_per_epoch} steps per epoch",
                cfg.train.accumulate_steps
            );
        }
        if crate::distributed::device::cudnn_autotune(opts.device, cfg.train.cudnn_benchmark) {
            tracing::info!("cuDNN autotuning on (train.cudnn_benchmark)");
        }
        // Initial weights are a function of the seed too.
        tch::manual_seed(derive(&[cfg.train.seed, u64::MAX - 1]) as i64 & i64::MAX);
        let (model, memory_format) = build_train_model(cfg, opts.device)?;
        if memory_format != MemoryFormat::Contiguous {
            tracing::info!("training in memory format {memory_format:?}");
        }
        if cfg.model.sync_bn && !dp.alone() && !cfg.model.freeze_bn {
            model.set_batch_norm_group(Some(crate::distributed::group_sum::group_sum(dp.comm.clone())));
            tracing::info!("SyncBatchNorm: batch statistics over {} ranks", dp.size());
        }
        let optim = build_optimizer(cfg, &model);
        dp.set_compression(&cfg.dist, steps_per_epoch * cfg.train.epochs as u64, cfg.train.seed);
        if dp.compression() != crate::config::Compression::None {
            tracing::info!("gradient compression: {}", dp.compression().name());
        }
        if cfg.dist.overlap && dp.enable_overlap(&optim.params)? {
            tracing::info!("gradient all-reduce overlapped with backward");
        }
        let schedule = build_schedule(cfg, steps_per_epoch)?;
        let loss = build_loss(cfg, &model)?;
        let classes = crate::app::classes(&cfg.data).names;
        let log = MetricsLog::open(&out.join("metrics.jsonl"), dp.is_root(), classes)?;
        let weighted: Vec<String> = model
            .output_names()
            .iter()
            .zip(&loss.head_weights)
            .filter(|(_, &w)| w != 0.0)
            .map(|(n, _)| n.to_string())
            .collect();
        let head_names = if weighted.len() > 1 { weighted } else { Vec::new() };
        Ok(Run {
            cfg,
            model,
            optim,
            schedule,
            loss,
            train_ds,
            sampler,
            dp,
            global_batch,
            steps_per_epoch,
            state: TrainState::default(),
            scaler: build_scaler(cfg),
            memory_format,
            ckpt_dir: out.join("checkpoints"),
            log,
            last_checkpoint: None,
            last_eval: None,
            head_names,
            eta: Eta::default(),
            last_eval_secs: None,
            val_len: None,
        })
    }

    fn restore(&mut self, opts: &TrainOptions) -> anyhow::Result<()> {
        let loaded = match &opts.resume {
            None => None,
            Some(Resume::Auto) => {
                let found = checkpoint::latest_valid(&self.ckpt_dir);
                if found.is_none() {
                    tracing::info!("no checkpoint in {} — starting from scratch", self.ckpt_dir.display());
                }
                found
            }
            Some(Resume::Path(p)) => Some((p.clone(), checkpoint::load(p)?)),
        };
        let loaded_any = loaded.is_some();
        let mut compression_state = None;
        if let Some((path, l)) = loaded {
            let same_world = l.meta.state.world_size == Some(self.dp.size());
            if self.dp.compression() != crate::config::Compression::None {
                compression_state = Some(match same_world {
                    true => checkpoint::load_rank_state(&path, self.dp.rank(), self.dp.size())?,
                    false => None,
                });
            }
            if l.meta.model != self.model.preset || l.meta.num_classes != self.model.num_classes {
                bail!(
                    "checkpoint {} was written for {} with {} classes; this config builds {} with {} classes",
                    path.display(),
                    l.meta.model,
                    l.meta.num_classes,
                    self.model.preset,
                    self.model.num_classes
                );
            }
            load_into(&self.model, l.model, LoadMode::Strict, &path.display().to_string())?;
            self.optim.load_state(&l.optim).with_context(|| format!("checkpoint {}", path.display()))?;
            if let (Some(s), Some(saved)) = (&mut self.scaler, l.meta.state.amp) {
                (s.scale, s.good_steps, s.skipped) = (saved.scale, saved.good_steps, saved.skipped);
            }
            self.state = TrainState { amp: None, ..l.meta.state };
            if self.state.epoch_samples.is_none() {
                // Written before segzoo recorded it: placed by the step, as it was then.
                self.state.epoch = (self.state.step / self.steps_per_epoch) as usize;
                self.state.epoch_samples = Some(self.state.step % self.steps_per_epoch * self.global_batch as u64);
            }
            tracing::info!(
                "resumed from {} at step {} (epoch {}, {} of its samples done)",
                path.display(),
                self.state.step,
                self.state.epoch + 1,
                self.state.epoch_samples.unwrap_or(0)
            );
            let saved = self.state.world_size.zip(self.state.global_batch);
            let fixed = self.cfg.train.global_batch.is_some();
            if let Some(note) = position::change_note(saved, self.dp.size(), self.global_batch, fixed) {
                tracing::info!("{note}");
            }
        } else {
            crate::app::load_pretrained(&self.model, &self.cfg.model)?;
        }
        if let Some(e) = opts.begin_epoch {
            self.state.step = e as u64 * self.steps_per_epoch;
            (self.state.epoch, self.state.epoch_samples) = (e, Some(0));
            tracing::info!("beginning at epoch {} (step {})", e + 1, self.state.step);
        }
        self.state.epoch_samples.get_or_insert(0);
        self.restore_compression(compression_state)?;
        (self.state.world_size, self.state.global_batch) = (Some(self.dp.size()), Some(self.global_batch));
        self.dp.agree(
            "starting step",
            self.state.step as i64,
            "every rank must resume from the same checkpoint (train.output_dir on a filesystem all ranks share)",
        )?;
        self.dp.broadcast_state(&self.model)?;
        // Records after the resumed step are redone by this run: dropped, not duplicated.
        if loaded_any {
            self.log.keep_through(self.state.step)?;
        }
        if self.cfg.log.tensorboard {
            self.log.start_tensorboard(&self.cfg.train.output_dir.join("tb"), self.state.step)?;
        }
        self.log.write(&Record::Start(StartRecord {
            step: self.state.step,
            world_size: self.dp.size(),
            global_batch: self.global_batch,
            accumulate_steps: self.cfg.train.accumulate_steps,
        }));
        Ok(())
    }

    /// Gradient compression's state from a resumed checkpoint (`Some(None)`: compression was
    /// on, its state not there): all ranks restore theirs, or all start afresh together
    /// (PowerSGD's Q factors must be the same on every rank), and the log says which.
    fn restore_compression(&mut self, saved: Option<Option<Vec<(String, tch::Tensor)>>>) -> anyhow::Result<()> {
        let step = self.state.step;
        let Some(saved) = saved else { return self.dp.restore_compression(None, step) };
        let every_rank = !self.dp.any(&[saved.is_none()])?[0];
        match saved.filter(|_| every_rank) {
            Some(tensors) => {
                self.dp.restore_compression(Some(&tensors), step)?;
                if !tensors.is_empty() && self.dp.is_root() {
                    tracing::info!("{} state restored on every rank", self.dp.compression().name());
                }
            }
            None => {
                self.dp.restore_compression(None, step)?;
                if self.dp.is_root() && self.dp.compression() == crate::config::Compression::Powersgd {
                    let written = self.state.world_size.map_or("an unknown number of".into(), |w| w.to_string());
                    tracing::info!(
                        "PowerSGD state starts afresh: the checkpoint was written by {written} rank(s), this run has {} \
                         (or a rank's state file is missing)",
                        self.dp.size()
                    );
                }
            }
        }
        Ok(())
    }

    /// The val list's length (0 if it cannot be read: the ETA's guess is then smaller).
    pub(super) fn val_images(&mut self) -> usize {
        let data = &self.cfg.data;
        *self.val_len.get_or_insert_with(|| crate::app::dataset(data, Split::Val).map(|d| d.len()).unwrap_or(0))
    }

    /// The checkpoint metadata at this point.
    fn meta(&self) -> Meta {
        let amp =
            self.scaler.as_ref().map(|s| ScalerState { scale: s.scale, good_steps: s.good_steps, skipped: s.skipped });
        let state = TrainState { amp, ..self.state.clone() };
        Meta::new(&self.model.preset, self.model.num_classes, state, self.last_eval.clone(), self.cfg.clone())
    }

    /// Every rank calls this; rank 0 writes while the others wait.
    pub(super) fn save(&mut self) -> anyhow::Result<()> {
        let path = checkpoint::path_for_step(&self.ckpt_dir, self.state.step);
        if self.last_checkpoint.as_ref() == Some(&path) {
            return Ok(());
        }
        self.dp.average_bn_stats(&self.model)?;
        if self.dp.is_root() {
            checkpoint::save(&path, &self.model.state_dict(), &self.optim.state_tensors(), &self.meta())?;
            checkpoint::prune(&self.ckpt_dir, self.cfg.train.keep_checkpoints);
            tracing::info!("saved {}", path.display());
        }
        // Gradient compression's per-rank state (PowerSGD's errors differ by rank), beside it.
        if self.dp.compression() != crate::config::Compression::None {
            let own = self.dp.compression_state();
            checkpoint::save_rank_state(&path, self.dp.rank(), self.dp.size(), &own)?;
        }
        self.dp.barrier()?;
        self.last_checkpoint = Some(path);
        Ok(())
    }

    /// Evaluation while training (single scale, whole image): every rank evaluates its
    /// shard, the tallies are summed, so every rank knows the score; rank 0 logs, writes
    /// the record and, on a new best, `best.safetensors`.
    pub(super) fn evaluate(&mut self, epoch: usize) -> anyhow::Result<()> {
        let cfg = self.cfg;
        self.dp.average_bn_stats(&self.model)?;
        let start = Instant::now();
        let modes = InferenceOptions {
            scales: vec![cfg.eval.train_scale],
            ..InferenceOptions::whole(self.model.align_corners(), self.model.input_multiple())
        };
        let (tally, images) =
            crate::app::evaluation::evaluate_sharded(cfg, &self.model, self.dp.comm.as_ref(), &modes, false)?;
        let secs = start.elapsed().as_secs_f64();
        self.last_eval_secs = Some(secs);
        let score = tally.score(&crate::app::classes(&cfg.data).names);
        let root = self.dp.is_root();
        if root {
            tracing::info!("epoch {epoch} eval ({:.1} img/s)\n{score}", images as f64 / secs);
        }
        let record = EvalRecord { epoch, step: self.state.step, score: score.compact() };
        self.log.write(&Record::Eval(record.clone()));
        if root && self.log.tensorboard_on() && self.model.task() == crate::models::Task::Segmentation {
            self.preview_images();
        }
        self.draw_curves();
        self.last_eval = Some(record);
        let (metric, value) = score.main();
        if value.is_finite() && self.state.best.as_ref().is_none_or(|b| value > b.value) {
            self.state.best = Some(Best { metric: metric.into(), value, step: Some(self.state.step) });
            if root {
                let path = self.ckpt_dir.join("best.safetensors");
                checkpoint::save(&path, &self.model.state_dict(), &self.optim.state_tensors(), &self.meta())?;
                tracing::info!("new best {value:.4} → {}", path.display());
            }
        }
        self.dp.barrier()
    }

    /// The first `log.tensorboard_images` val images as image | label | prediction
    /// overlays, in TensorBoard at this step. A failure is a warning.
    fn preview_images(&mut self) {
        let cfg = self.cfg;
        let result = (|| -> anyhow::Result<Vec<image::RgbImage>> {
            let ds = crate::app::seg_val_dataset(&cfg.data)?;
            let classes = crate::app::classes(&cfg.data);
            // As the evaluation while training sees them.
            let modes = InferenceOptions {
                scales: vec![cfg.eval.train_scale],
                ..InferenceOptions::whole(self.model.align_corners(), self.model.input_multiple())
            };
            let mut out = Vec::new();
            for i in 0..cfg.log.tensorboard_images.min(ds.len()) {
                let (img, truth) = ds.load_raw(i)?;
                let pred = crate::eval::predict::predict(&self.model, &img, cfg.data.mean, cfg.data.std, &modes)?;
                let panels = crate::eval::visualise::Comparison { image: &img, truth: Some(&truth), pred: &pred };
                out.push(panels.render(&classes, 0.6)?);
            }
            Ok(out)
        })();
        match result {
            Ok(images) => {
                for (i, img) in images.iter().enumerate() {
                    self.log.image(self.state.step, &format!("val/image_{i}"), img);
                }
            }
            Err(e) => tracing::warn!("no val images in TensorBoard: {e:#}"),
        }
    }

    pub(super) fn draw_curves(&self) {
        if !self.dp.is_root() {
            return;
        }
        let out = &self.cfg.train.output_dir;
        if let Err(e) = super::curves::render(&out.join("metrics.jsonl"), &out.join("curves.png")) {
            tracing::warn!("curves.png not drawn: {e:#}");
        }
    }

    pub(super) fn summary(&self, last_loss: f64) -> TrainSummary {
        TrainSummary {
            steps: self.state.step,
            last_loss,
            best: self.state.best.clone(),
            last_eval: self.last_eval.clone(),
            last_checkpoint: self.last_checkpoint.clone(),
        }
    }
}
