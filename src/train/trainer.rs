//! The training loop of one rank: alone, or one of a data-parallel group (sharded data,
//! averaged gradients, rank 0 writing). Exact resume: the position is the step count;
//! everything random is a function of (seed, epoch, sample index) or (seed, step, rank).
use super::amp::{self, GradScaler};
use super::checkpoint::{self, Meta};
use super::data_parallel::DataParallel;
use super::loss::{Ohem, SegLoss};
use super::optim::{Optimizer, Param};
use super::schedule::LrSchedule;
use crate::config::{Config, Precision, Schedule};
use crate::data::dataset::{self, Dataset, Split};
use crate::data::labels::class_names;
use crate::data::loader::{self, LoaderOptions};
use crate::data::rng::derive;
use crate::data::sampler::ShardedSampler;
use crate::dist::{Collective, Comm};
use crate::eval::evaluate::{self, Tally};
use crate::models::weights::{load_into, LoadMode};
use crate::models::{registry, Model, Task};
use anyhow::{bail, Context};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Tensor};

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
    /// The job's collective group ([`crate::dist::collective::single`] when alone).
    pub comm: Comm,
}

#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub steps: u64,
    pub last_loss: f64,
    pub best_miou: Option<f64>,
    /// The last evaluation's metrics (JSON), if any.
    pub last_eval: Option<serde_json::Value>,
    pub last_checkpoint: Option<PathBuf>,
}

/// Appends one JSON object per line to `metrics.jsonl` (rank 0 only: `None` elsewhere).
struct MetricsLog(Option<std::fs::File>);

impl MetricsLog {
    fn write(&mut self, v: serde_json::Value) {
        if let Some(f) = &mut self.0 {
            if let Err(e) = writeln!(f, "{v}") {
                tracing::warn!("cannot append to metrics.jsonl: {e}");
            }
        }
    }
}

struct Run<'a> {
    cfg: &'a Config,
    model: Model,
    optim: Optimizer,
    schedule: LrSchedule,
    loss: SegLoss,
    train_ds: Arc<dyn Dataset>,
    sampler: ShardedSampler,
    dp: DataParallel,
    steps_per_epoch: u64,
    step: u64,
    best: Option<f64>,
    ckpt_dir: PathBuf,
    log: MetricsLog,
    last_checkpoint: Option<PathBuf>,
    last_eval: Option<serde_json::Value>,
    scaler: Option<GradScaler>,
}

pub fn train(cfg: &Config, opts: &TrainOptions) -> anyhow::Result<TrainSummary> {
    let out = &cfg.train.output_dir;
    let dp = DataParallel::new(opts.comm.clone(), cfg.dist.bucket_mb, opts.device);
    if dp.is_root() {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        std::fs::write(out.join("config.toml"), toml::to_string(cfg)?).context("writing the resolved config")?;
    }
    let train_ds: Arc<dyn Dataset> = dataset::from_config(&cfg.data, Split::Train)?.into();
    let bs = cfg.train.batch_size as u64;
    // train.batch_size is per rank, as in the recipes: the global batch is batch_size × ranks.
    let sampler = ShardedSampler::train(train_ds.len(), dp.size(), dp.rank(), cfg.train.seed);
    let steps_per_epoch = sampler.per_rank() as u64 / bs;
    if steps_per_epoch == 0 {
        bail!(
            "the train list has {} samples, fewer than train.batch_size = {bs} × {} rank(s)",
            train_ds.len(),
            dp.size()
        );
    }
    if dp.size() > 1 {
        tracing::info!(
            "data parallel over {} ranks ({} backend): global batch {}, {} steps per epoch",
            dp.size(),
            dp.comm.kind(),
            bs as usize * dp.size(),
            steps_per_epoch
        );
    }
    // Initial weights are a function of the seed too.
    tch::manual_seed(derive(&[cfg.train.seed, u64::MAX - 1]) as i64 & i64::MAX);
    let model = registry::build(&cfg.model, Some(cfg.data.dataset.num_classes()), opts.device)?;
    let optim = build_optimizer(cfg, &model);
    let total = steps_per_epoch * cfg.train.epochs as u64;
    let t = &cfg.train;
    let schedule = LrSchedule {
        base_lr: t.lr,
        min_lr: t.min_lr,
        kind: t.schedule,
        total_iters: total,
        power: t.power,
        milestones: t.milestones.iter().map(|&e| e as u64 * steps_per_epoch).collect(),
        gamma: t.gamma,
        warmup_iters: t.warmup_iters as u64,
        warmup: t.warmup,
        warmup_ratio: t.warmup_ratio,
    };
    if t.schedule == Schedule::MultiStep && t.milestones.is_empty() {
        bail!("train.schedule = \"multi_step\" needs train.milestones (epochs)");
    }
    let loss = build_loss(cfg, &model)?;
    let log = MetricsLog(if dp.is_root() {
        Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(out.join("metrics.jsonl"))
                .context("opening metrics.jsonl")?,
        )
    } else {
        None
    });
    let mut run = Run {
        cfg,
        model,
        optim,
        schedule,
        loss,
        train_ds,
        sampler,
        dp,
        steps_per_epoch,
        step: 0,
        best: None,
        ckpt_dir: out.join("checkpoints"),
        log,
        last_checkpoint: None,
        last_eval: None,
        scaler: (cfg.train.precision == Precision::Fp16)
            .then(|| cfg.train.loss_scale.map_or_else(GradScaler::dynamic, GradScaler::fixed)),
    };
    run.restore(opts)?;
    run.fit(opts)
}

fn build_optimizer(cfg: &Config, model: &Model) -> Optimizer {
    let t = &cfg.train;
    let params = model
        .trainable_params()
        .into_iter()
        .map(|(name, tensor)| {
            let decay = !(t.no_decay_bias_norm && tensor.dim() <= 1);
            Param { name, tensor, decay }
        })
        .collect();
    Optimizer::new(t.optimizer, params, t.momentum, t.nesterov, t.weight_decay, (t.betas[0], t.betas[1]), t.eps)
}

fn build_loss(cfg: &Config, model: &Model) -> anyhow::Result<SegLoss> {
    let l = &cfg.train.loss;
    let n_out = model.output_names.len();
    let head_weights = match &l.head_weights {
        Some(w) if w.len() != n_out => bail!(
            "train.loss.head_weights has {} entries but {} returns {n_out} outputs ({})",
            w.len(),
            model.preset,
            model.output_names.join(", ")
        ),
        Some(w) => w.clone(),
        None => model.output_names.iter().map(|n| if *n == "aux" { 0.4 } else { 1.0 }).collect(),
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
        align_corners: model.align_corners,
    })
}

impl Run<'_> {
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
        if let Some((path, l)) = loaded {
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
            if let Some(s) = &mut self.scaler {
                let get = |k: &str| l.optim.get(k).map(|t| t.double_value(&[]));
                if let (Some(scale), Some(good), Some(skipped)) =
                    (get("amp.scale"), get("amp.good_steps"), get("amp.skipped"))
                {
                    (s.scale, s.good_steps, s.skipped) = (scale, good as u64, skipped as u64);
                }
            }
            self.step = l.meta.step;
            self.best = l.meta.best_miou;
            tracing::info!("resumed from {} at step {} (epoch {})", path.display(), self.step, l.meta.epoch + 1);
        } else {
            registry::load_pretrained(&self.model, &self.cfg.model)?;
        }
        if let Some(e) = opts.begin_epoch {
            self.step = e as u64 * self.steps_per_epoch;
            tracing::info!("beginning at epoch {} (step {})", e + 1, self.step);
        }
        self.dp.agree(
            "starting step",
            self.step as i64,
            "every rank must resume from the same checkpoint (train.output_dir on a filesystem all ranks share)",
        )?;
        self.dp.broadcast_state(&self.model)?;
        Ok(())
    }

    fn meta(&self, epoch: usize, metrics: serde_json::Value) -> Meta {
        Meta {
            format: checkpoint::FORMAT,
            segzoo_version: env!("CARGO_PKG_VERSION").into(),
            model: self.model.preset.clone(),
            num_classes: self.model.num_classes,
            step: self.step,
            epoch,
            best_miou: self.best,
            metrics,
            config: self.cfg.clone(),
        }
    }

    /// Optimiser state plus the fp16 loss scaler's.
    fn optim_state(&self) -> Vec<(String, Tensor)> {
        let mut state = self.optim.state_tensors();
        if let Some(s) = &self.scaler {
            state.push(("amp.scale".into(), Tensor::from(s.scale)));
            state.push(("amp.good_steps".into(), Tensor::from(s.good_steps as i64)));
            state.push(("amp.skipped".into(), Tensor::from(s.skipped as i64)));
        }
        state
    }

    /// Every rank calls this; rank 0 writes while the others wait.
    fn save(&mut self, epoch: usize) -> anyhow::Result<()> {
        let path = checkpoint::path_for_step(&self.ckpt_dir, self.step);
        if self.last_checkpoint.as_ref() == Some(&path) {
            return Ok(());
        }
        self.dp.average_bn_stats(&self.model)?;
        if self.dp.is_root() {
            let meta = self.meta(epoch, self.last_eval.clone().unwrap_or(serde_json::Value::Null));
            checkpoint::save(&path, &self.model.state_dict(), &self.optim_state(), &meta)?;
            checkpoint::prune(&self.ckpt_dir, self.cfg.train.keep_checkpoints);
            tracing::info!("saved {}", path.display());
        }
        self.dp.barrier()?;
        self.last_checkpoint = Some(path);
        Ok(())
    }

    fn fit(mut self, opts: &TrainOptions) -> anyhow::Result<TrainSummary> {
        let cfg = self.cfg;
        let (t, bs) = (&cfg.train, cfg.train.batch_size);
        let epochs = t.epochs;
        let loader_opts = LoaderOptions {
            batch_size: bs,
            workers: cfg.data.num_workers.max(1),
            prefetch: cfg.data.prefetch.max(1),
            drop_last: true,
            seed: t.seed,
        };
        let mut last_loss = f64::NAN;
        let mut last_finite = f64::NAN;
        let device = self.model.device();
        while (self.step / self.steps_per_epoch) < epochs as u64 {
            let epoch = (self.step / self.steps_per_epoch) as usize;
            let offset = (self.step % self.steps_per_epoch) as usize;
            let indices = self.sampler.indices(epoch as u64);
            let todo = &indices[offset * bs..self.steps_per_epoch as usize * bs];
            let mut timer = Instant::now();
            let mut since_log = 0u64;
            let mut loss_sum = 0.0;
            for batch in loader::epoch(self.train_ds.clone(), todo, epoch as u64, &loader_opts) {
                let batch = batch?;
                // Dropout differs between ranks; alone, the stream is the single-device one.
                let seed = match self.dp.size() {
                    1 => derive(&[t.seed, self.step]),
                    _ => derive(&[t.seed, self.step, self.dp.rank() as u64]),
                };
                tch::manual_seed(seed as i64 & i64::MAX);
                let lr = self.schedule.lr(self.step);
                let x = batch.images.to_device(device);
                let y = batch.targets.to_device(device);
                let loss = amp::autocast(device, t.precision, || {
                    let outputs = self.model.forward_t(&x, true);
                    match self.model.task {
                        Task::Segmentation => self.loss.total(&outputs, &y),
                        Task::Classification => outputs[0].cross_entropy_for_logits(&y),
                    }
                })?;
                // The mean over the ranks: logged, and every rank takes the same NaN decision.
                let value = self.dp.mean(&loss)?;
                // fp16 overflow is the scaler's to handle (the step is skipped); in fp32/bf16 it is fatal.
                if !value.is_finite() && self.scaler.is_none() {
                    let kept =
                        self.last_checkpoint.as_ref().map_or("none yet".to_string(), |p| p.display().to_string());
                    bail!(
                        "loss became {value} at step {} (epoch {}); last finite loss {last_finite:.4}; last good checkpoint: {kept}",
                        self.step + 1,
                        epoch + 1
                    );
                }
                self.optim.zero_grad();
                match &mut self.scaler {
                    None => {
                        loss.backward();
                        self.dp.average_gradients(&self.optim.params)?;
                        self.optim.step(lr);
                    }
                    Some(scaler) => {
                        scaler.scale_loss(&loss).backward();
                        // Averaged before the overflow check, so every rank skips or steps alike.
                        self.dp.average_gradients(&self.optim.params)?;
                        let params: Vec<Tensor> = self.optim.params.iter().map(|p| p.tensor.shallow_clone()).collect();
                        let finite = scaler.unscale(&params);
                        if scaler.update(finite) {
                            self.optim.step(lr);
                        } else {
                            tracing::warn!(
                                "fp16 overflow at step {}: step skipped, loss scale now {}",
                                self.step + 1,
                                scaler.scale
                            );
                        }
                    }
                }
                self.step += 1;
                last_loss = value;
                if value.is_finite() {
                    last_finite = value;
                }
                since_log += 1;
                loss_sum += value;
                let in_epoch = self.step - epoch as u64 * self.steps_per_epoch;
                if self.step % cfg.log.interval as u64 == 0 || in_epoch == self.steps_per_epoch {
                    let secs = timer.elapsed().as_secs_f64();
                    let ms = 1000.0 * secs / since_log as f64;
                    // The mean over the interval, as the recipes log it.
                    let avg = loss_sum / since_log as f64;
                    let ips = (since_log as usize * bs) as f64 / secs.max(1e-9);
                    // Images/s counts the whole job's images; other ranks' lines are debug-level.
                    let ips = ips * self.dp.size() as f64;
                    let line = format!(
                        "epoch [{:>3}/{epochs}] step {in_epoch}/{}  loss {avg:.4}  lr {lr:.3e}  {ms:.1} ms/step  {ips:.1} img/s",
                        epoch + 1,
                        self.steps_per_epoch
                    );
                    if self.dp.is_root() {
                        tracing::info!("{line}");
                    } else {
                        tracing::debug!("{line}");
                    }
                    self.log.write(json!({"kind": "train", "epoch": epoch + 1, "step": self.step, "loss": avg, "lr": lr, "ms_per_step": ms, "img_per_s": ips}));
                    timer = Instant::now();
                    since_log = 0;
                    loss_sum = 0.0;
                }
                if t.checkpoint_steps > 0 && self.step % t.checkpoint_steps == 0 {
                    self.save(epoch)?;
                }
                if opts.max_steps.is_some_and(|m| self.step >= m) {
                    self.save(epoch)?;
                    return Ok(self.summary(last_loss));
                }
            }
            let done = epoch + 1;
            let e = &cfg.eval;
            if done >= e.start && ((done - e.start) % e.interval == 0 || done == epochs) {
                self.evaluate(done)?;
            }
            if done % t.checkpoint_interval == 0 || done == epochs {
                // Saved at the start of the next epoch's position.
                self.save(done)?;
            }
        }
        self.draw_curves();
        Ok(self.summary(last_loss))
    }

    /// Every rank evaluates its shard of the val set; the tallies are summed, so every
    /// rank knows the score; rank 0 logs and writes.
    fn evaluate(&mut self, epoch: usize) -> anyhow::Result<()> {
        let cfg = self.cfg;
        self.dp.average_bn_stats(&self.model)?;
        let start = Instant::now();
        // Evaluation while training is single scale, whole image.
        let modes =
            crate::eval::inference::InferenceOptions::whole(self.model.align_corners, self.model.input_multiple);
        let (tally, images) = evaluate_sharded(cfg, &self.model, self.dp.comm.as_ref(), &modes, false)?;
        let secs = start.elapsed().as_secs_f64();
        let root = self.dp.is_root();
        let (score, record) = match tally {
            Tally::Seg(cm) => {
                let m = cm.summary(&class_names(cfg.data.dataset));
                if root {
                    tracing::info!(
                        "epoch {epoch} eval ({:.1} img/s)\n{}\n{}",
                        images as f64 / secs,
                        m.recipe_lines(),
                        m.table()
                    );
                }
                (
                    m.miou,
                    json!({"kind": "eval", "epoch": epoch, "step": self.step, "miou": m.miou, "iou": m.iou, "pixel_acc": m.pixel_acc, "mean_class_acc": m.mean_class_acc}),
                )
            }
            Tally::Cls(t1, t5, n) => {
                let (a1, a5) = (t1 as f64 / n.max(1) as f64, t5 as f64 / n.max(1) as f64);
                if root {
                    tracing::info!("epoch {epoch} eval: top-1 {:.2}%  top-5 {:.2}%", 100.0 * a1, 100.0 * a5);
                }
                (a1, json!({"kind": "eval", "epoch": epoch, "step": self.step, "top1": a1, "top5": a5}))
            }
        };
        self.log.write(record.clone());
        self.draw_curves();
        self.last_eval = Some(record.clone());
        if score.is_finite() && self.best.is_none_or(|b| score > b) {
            self.best = Some(score);
            if root {
                let path = self.ckpt_dir.join("best.safetensors");
                let meta = self.meta(epoch, record);
                checkpoint::save(&path, &self.model.state_dict(), &self.optim_state(), &meta)?;
                tracing::info!("new best {score:.4} → {}", path.display());
            }
        }
        self.dp.barrier()
    }

    fn draw_curves(&self) {
        if !self.dp.is_root() {
            return;
        }
        let out = &self.cfg.train.output_dir;
        if let Err(e) = super::curves::render(&out.join("metrics.jsonl"), &out.join("curves.png")) {
            tracing::warn!("curves.png not drawn: {e:#}");
        }
    }

    fn summary(&self, last_loss: f64) -> TrainSummary {
        TrainSummary {
            steps: self.step,
            last_loss,
            best_miou: self.best,
            last_eval: self.last_eval.clone(),
            last_checkpoint: self.last_checkpoint.clone(),
        }
    }
}

/// Evaluate a checkpoint (or weights file) on the config's val list with the `[eval]`
/// inference modes (scales, flip, sliding window), sharded over the ranks of `comm`;
/// returns the whole set's tally (on every rank) and its image count.
pub fn evaluate_checkpoint(
    cfg: &Config,
    weights: &Path,
    device: Device,
    comm: &dyn Collective,
) -> anyhow::Result<(Tally, usize)> {
    let model = registry::build(&cfg.model, Some(cfg.data.dataset.num_classes()), device)?;
    // Training checkpoints and weights-only files (safetensors or .pth) alike.
    crate::models::weights::load_file(&model, weights, LoadMode::Strict)?;
    let modes = evaluate::inference_options(cfg, &model);
    evaluate_sharded(cfg, &model, comm, &modes, comm.rank() == 0)
}

/// `model` on this rank's shard of the config's val list (no image twice, none left
/// out), the tallies summed over the ranks; returns the whole set's tally and size.
fn evaluate_sharded(
    cfg: &Config,
    model: &Model,
    comm: &dyn Collective,
    modes: &crate::eval::inference::InferenceOptions,
    progress: bool,
) -> anyhow::Result<(Tally, usize)> {
    let val: Arc<dyn Dataset> = dataset::from_config(&cfg.data, Split::Val)?.into();
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

/// `cuda:N` when CUDA is available, else the CPU.
pub fn default_device() -> Device {
    if tch::Cuda::is_available() {
        Device::Cuda(0)
    } else {
        Device::Cpu
    }
}

/// `segzoo bench train`: forward + loss + backward + optimiser step on synthetic tensors
/// of the config's crop size; returns (ms/step, images/s) over `steps` after 2 warm-up steps.
pub fn bench(cfg: &Config, steps: usize, device: Device) -> anyhow::Result<(f64, f64)> {
    tch::manual_seed(cfg.train.seed as i64);
    let model = registry::build(&cfg.model, Some(cfg.data.dataset.num_classes()), device)?;
    let mut optim = build_optimizer(cfg, &model);
    let loss = build_loss(cfg, &model)?;
    let [h, w] = cfg.data.crop_size;
    let bs = cfg.train.batch_size as i64;
    let x = Tensor::randn([bs, 3, h as i64, w as i64], (tch::Kind::Float, device));
    let y = match model.task {
        Task::Segmentation => Tensor::randint(model.num_classes, [bs, h as i64, w as i64], (tch::Kind::Int64, device)),
        Task::Classification => Tensor::randint(model.num_classes, [bs], (tch::Kind::Int64, device)),
    };
    let one = |optim: &mut Optimizer| -> anyhow::Result<f64> {
        let l = amp::autocast(device, cfg.train.precision, || {
            let outputs = model.forward_t(&x, true);
            match model.task {
                Task::Segmentation => loss.total(&outputs, &y),
                Task::Classification => outputs[0].cross_entropy_for_logits(&y),
            }
        })?;
        optim.zero_grad();
        l.backward();
        optim.step(cfg.train.lr);
        Ok(l.double_value(&[]))
    };
    for _ in 0..2 {
        one(&mut optim)?;
    }
    if let Device::Cuda(_) = device {
        tch::Cuda::synchronize(0);
    }
    let start = Instant::now();
    for _ in 0..steps {
        one(&mut optim)?;
    }
    if let Device::Cuda(_) = device {
        tch::Cuda::synchronize(0);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((1000.0 * secs / steps.max(1) as f64, (steps as i64 * bs) as f64 / secs))
}
