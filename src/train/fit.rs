//! The training loop: epochs of sharded batches through `step.rs`, interval-averaged
//! log lines and `metrics.jsonl` records, checkpoints every N steps or epochs, and
//! evaluation. Exact resume: the position is the step count and the samples of the epoch
//! consumed (so it holds across a change of world size, `position.rs`); everything random
//! is a function of (seed, epoch, sample index) or (seed, step, rank).
//!
//! Losses stay on the device until they are needed — at a log line, and before any
//! checkpoint or evaluation — and are then brought to the host (averaged over the
//! ranks) in one transfer, so a step costs no host synchronisation. A non-finite loss
//! ends the run at that point, before anything is saved from the diverged weights.
use super::breakdown::{hms, Interval, Means, StepTimes};
use super::memory;
use super::position;
use super::preempt::{Interrupted, Signals};
use super::records::{Record, TrainRecord};
use super::run::{Run, TrainOptions, TrainSummary};
use super::step::{train_step, StepContext};
use super::straggler::{Stragglers, Verdict};
use super::trace::TraceWindow;
use crate::data::loader::{self, LoaderOptions};
use crate::data::rng::derive;
use crate::distributed::watchdog;
use crate::timeline;
use anyhow::bail;
use std::collections::BTreeMap;
use std::time::Instant;
use tch::Tensor;

/// Steps' losses not yet brought to the host, and the log interval's running sums.
#[derive(Default)]
struct LossWindow {
    /// Per step: the loss, then each head's (when several are weighted).
    pending: Vec<Tensor>,
    /// Index (1-based step) of the first pending loss.
    first_pending_step: u64,
    sum: f64,
    head_sums: Vec<f64>,
    count: u64,
    last: f64,
    last_finite: f64,
}

impl LossWindow {
    fn new(heads: usize) -> Self {
        LossWindow { last: f64::NAN, last_finite: f64::NAN, head_sums: vec![0.0; heads], ..Default::default() }
    }

    fn push(&mut self, loss: &Tensor, heads: &[Tensor], step: u64) {
        if self.pending.is_empty() {
            self.first_pending_step = step;
        }
        let mut parts = vec![loss.shallow_clone()];
        parts.extend(heads.iter().map(Tensor::shallow_clone));
        self.pending.push(if parts.len() == 1 { loss.shallow_clone() } else { Tensor::stack(&parts, 0) });
    }

    /// The interval's mean loss and heads' means; starts the next interval.
    fn take_means(&mut self) -> (f64, Vec<f64>) {
        let n = self.count.max(1) as f64;
        let mean = self.sum / n;
        let heads = self.head_sums.iter_mut().map(|s| std::mem::take(s) / n).collect();
        (self.sum, self.count) = (0.0, 0);
        (mean, heads)
    }
}

impl Run<'_> {
    /// Bring pending losses to the host (their means over the ranks) and check them: in
    /// fp32/bf16 a non-finite loss is fatal; in fp16 it is the scaler's (step skipped).
    fn flush_losses(&mut self, window: &mut LossWindow, epoch: usize) -> anyhow::Result<()> {
        let values = self.dp.mean_each(&std::mem::take(&mut window.pending))?;
        let per_step = 1 + window.head_sums.len();
        for (i, step) in values.chunks(per_step).enumerate() {
            let value = step[0];
            if !value.is_finite() && self.scaler.is_none() {
                let kept = self.last_checkpoint.as_ref().map_or("none yet".to_string(), |p| p.display().to_string());
                bail!(
                    "loss became {value} at step {} (epoch {}); last finite loss {:.4}; last good checkpoint: {kept}",
                    window.first_pending_step + i as u64,
                    epoch + 1,
                    window.last_finite
                );
            }
            window.last = value;
            if value.is_finite() {
                window.last_finite = value;
            }
            window.sum += value;
            for (sum, v) in window.head_sums.iter_mut().zip(&step[1..]) {
                *sum += v;
            }
            window.count += 1;
        }
        Ok(())
    }

    /// A checkpoint at this step, after the pending losses are checked.
    fn checked_save(&mut self, window: &mut LossWindow, epoch: usize) -> anyhow::Result<()> {
        self.flush_losses(window, epoch)?;
        let _span = timeline::span("checkpoint");
        self.save()
    }

    /// Whether `[eval]` evaluates after epoch `done` (1-based).
    pub(super) fn evaluates_after(&self, done: usize) -> bool {
        let (e, epochs) = (&self.cfg.eval, self.cfg.train.epochs);
        done >= e.start && ((done - e.start) % e.interval == 0 || done == epochs)
    }

    /// Seconds to the end: the remaining steps at the smoothed step time, and the
    /// remaining evaluations at the last one's duration (before the first, a forward at a
    /// third of a training image's time per val image, a rough guess).
    fn eta_seconds(&mut self, times: &Means, max_steps: Option<u64>) -> f64 {
        self.eta.update(times.step_ms);
        let total = self.steps_per_epoch * self.cfg.train.epochs as u64;
        let end = max_steps.map_or(total, |m| m.min(total));
        let steps_left = end.saturating_sub(self.state.step);
        let epoch_at_end = end.div_ceil(self.steps_per_epoch) as usize;
        let done = self.state.epoch;
        let evals_left = (done + 1..=epoch_at_end).filter(|&d| self.evaluates_after(d)).count();
        let eval_secs = self.last_eval_secs.unwrap_or_else(|| {
            let per_image_ms = times.step_ms / self.per_step_images() as f64;
            self.val_images() as f64 / self.dp.size() as f64 * per_image_ms / 3.0 / 1000.0
        });
        self.eta.seconds(steps_left, evals_left, eval_secs)
    }

    /// Images of one optimiser step on this rank.
    fn per_step_images(&self) -> usize {
        self.cfg.train.batch_size * self.cfg.train.accumulate_steps
    }

    fn log_interval(
        &mut self,
        window: &mut LossWindow,
        at: (usize, u64),
        lr: f64,
        times: Means,
        max_steps: Option<u64>,
        stragglers: Option<&mut Stragglers>,
    ) -> anyhow::Result<()> {
        // Every rank's own time, gathered (one small collective per log line).
        let verdict = match stragglers {
            Some(s) => s.interval(&self.dp, times.compute_ms + times.optimizer_ms, times.data_ms)?,
            None => Verdict::default(),
        };
        let (epoch, in_epoch) = at;
        let bs = self.per_step_images();
        // The mean over the interval, as the recipes log it.
        let (avg, heads) = window.take_means();
        // Images/s counts the whole job's images; other ranks' lines are debug-level.
        let ips = bs as f64 / (times.step_ms / 1000.0).max(1e-9) * self.dp.size() as f64;
        let eta = self.eta_seconds(&times, max_steps);
        let mem = memory::sample(self.dp.device);
        let heads: BTreeMap<String, f64> =
            self.head_names.iter().zip(heads).filter(|(_, v)| v.is_finite()).map(|(n, v)| (n.clone(), v)).collect();
        let head_text: String = heads.iter().map(|(n, v)| format!(" ({n} {v:.4})")).collect();
        let line = format!(
            "epoch [{:>3}/{}] step {in_epoch}/{}  loss {avg:.4}{head_text}  lr {lr:.3e}  {:.1} ms/step \
             (data {:.1} + compute {:.1} + comm {:.1} + optim {:.1})  {ips:.1} img/s  eta {}  mem {:.0} MB",
            epoch + 1,
            self.cfg.train.epochs,
            self.steps_per_epoch,
            times.step_ms,
            times.data_ms,
            times.compute_ms,
            times.comm_ms,
            times.optimizer_ms,
            hms(eta),
            mem.peak_mb(),
        );
        if self.dp.is_root() {
            tracing::info!("{line}");
        } else {
            tracing::debug!("{line}");
        }
        let record = TrainRecord {
            epoch: epoch + 1,
            step: self.state.step,
            loss: avg,
            lr,
            ms_per_step: times.step_ms,
            img_per_s: ips,
            data_wait_ms: times.data_ms,
            compute_ms: times.compute_ms,
            comm_ms: times.comm_ms,
            optimizer_ms: times.optimizer_ms,
            eta_s: eta,
            rss_mb: mem.rss_mb,
            peak_mem_mb: mem.peak_mb(),
            cuda_max_allocated_mb: mem.cuda_max_allocated_mb,
            world_size: self.dp.size(),
            head_loss: heads,
            loss_scale: self.scaler.as_ref().map(|s| s.scale),
            skipped_steps: self.scaler.as_ref().map(|s| s.skipped),
            ranks: verdict.ranks,
            straggler_ratio: verdict.ratio,
            straggler: verdict.straggler,
        };
        self.log.write(&Record::Train(record));
        Ok(())
    }

    /// Act on the signals received, at a step every rank agrees on: every step on the CPU
    /// (one tiny host collective), at each log line on GPUs (no extra host sync). SIGUSR1/2:
    /// a checkpoint now; SIGTERM/SIGINT: a checkpoint now, then [`Interrupted`].
    fn answer_signals(
        &mut self,
        signals: &Signals,
        window: &mut LossWindow,
        epoch: usize,
        logged: bool,
    ) -> anyhow::Result<()> {
        let agree_now = self.dp.alone() || self.dp.device == tch::Device::Cpu || logged;
        if !agree_now {
            return Ok(());
        }
        let request = signals.take();
        let agreed = self.dp.any(&[request.stop.is_some(), request.save])?;
        if !(agreed[0] || agreed[1]) {
            return Ok(());
        }
        watchdog::set_phase("checkpoint");
        self.checked_save(window, epoch)?;
        let path = self.last_checkpoint.clone();
        if agreed[0] {
            // A rank that got no signal itself stops because another did: SIGTERM's code.
            let signal = request.stop.unwrap_or(signal_hook::consts::SIGTERM);
            return Err(Interrupted { signal, step: self.state.step, checkpoint: path }.into());
        }
        if self.dp.is_root() {
            let why = if request.save { "a save signal (SIGUSR1/SIGUSR2)" } else { "another rank's save signal" };
            tracing::info!("checkpoint at step {} on {why}", self.state.step);
        }
        Ok(())
    }

    /// Torch's generator for this step: dropout differs between ranks; alone, the
    /// stream is the single-device one.
    fn seed_step(&self) {
        let seed = match self.dp.size() {
            1 => derive(&[self.cfg.train.seed, self.state.step]),
            _ => derive(&[self.cfg.train.seed, self.state.step, self.dp.rank() as u64]),
        };
        tch::manual_seed(seed as i64 & i64::MAX);
    }

    pub(super) fn fit(mut self, opts: &TrainOptions) -> anyhow::Result<TrainSummary> {
        let cfg = self.cfg;
        let (t, bs) = (&cfg.train, cfg.train.batch_size);
        let loader_opts = LoaderOptions {
            batch_size: bs,
            workers: cfg.data.num_workers.max(1),
            prefetch: cfg.data.prefetch.max(1),
            drop_last: true,
            seed: t.seed,
        };
        let device = self.model.device();
        let mut window = LossWindow::new(self.head_names.len());
        let mut times = Interval::default();
        let mut trace = t.trace_steps.map(|w| TraceWindow::new(w, &t.output_dir));
        // How much of the all-reduce the first step's backward hid, said once.
        let mut overlap_reported = false;
        let mut stragglers = match self.dp.size() > 1 && !self.dp.alone() {
            true => Some(Stragglers::new(&self.dp, cfg.dist.straggler_ratio)?),
            false => None,
        };
        let signals = Signals::install()?;
        let (len, global) = (self.train_ds.len(), self.global_batch as u64);
        let sample_log = SampleLog::from_env(self.dp.rank());
        while self.state.epoch < t.epochs {
            let epoch = self.state.epoch;
            let start = self.state.epoch_samples.unwrap_or(0);
            let todo = self.sampler.step_indices(epoch as u64, start as usize, global as usize);
            if todo.is_empty() {
                // Nothing left of it for a whole step (its remainder is dropped).
                (self.state.epoch, self.state.epoch_samples) = (epoch + 1, Some(0));
                continue;
            }
            // Steps of this epoch already done when it (re)started here, for the log line.
            let done_before = self.steps_per_epoch - position::steps_left(len, start, global as usize);
            let mut micro = Vec::with_capacity(t.accumulate_steps);
            if let Some(tr) = &mut trace {
                tr.before_step(self.state.step + 1, &self.dp)?;
            }
            // A step's time runs from the end of the previous one's bookkeeping (or the
            // epoch's start) to the end of its optimiser update.
            let mut step_start = Instant::now();
            watchdog::set_phase("data");
            let mut stepped = 0u64;
            let mut step_samples = Vec::new();
            for batch in loader::epoch(self.train_ds.clone(), &todo, epoch as u64, &loader_opts) {
                let batch = batch?;
                watchdog::set_phase("step");
                step_samples.extend_from_slice(&batch.indices);
                micro.push((to_device_async(&batch.images, device), to_device_async(&batch.targets, device)));
                if micro.len() < t.accumulate_steps {
                    continue;
                }
                let batches = std::mem::take(&mut micro);
                let data = step_start.elapsed();
                timeline::record("data wait", timeline::MAIN_LANE, step_start);
                watchdog::set_step(self.state.step + 1);
                self.seed_step();
                let lr = self.schedule.lr(self.state.step);
                let ctx = StepContext {
                    model: &self.model,
                    loss: &self.loss,
                    precision: t.precision,
                    dp: &self.dp,
                    memory_format: self.memory_format,
                };
                let result = train_step(&ctx, &mut self.optim, self.scaler.as_mut(), &batches, lr)?;
                if !result.applied {
                    let scale = self.scaler.as_ref().map_or(1.0, |s| s.scale);
                    tracing::warn!(
                        "fp16 overflow at step {}: step skipped, loss scale now {scale}",
                        self.state.step + 1
                    );
                }
                if let (false, Some((early, all))) = (overlap_reported, self.dp.overlapped()) {
                    tracing::info!("overlap: {early} of {all} gradient buckets started during backward");
                }
                overlap_reported = true;
                self.state.step += 1;
                stepped += 1;
                sample_log.write(epoch, self.state.step, &std::mem::take(&mut step_samples));
                // The position moves by the job's step; past the epoch's last whole step,
                // to the next epoch's start (what a checkpoint from now on records).
                let samples = start + stepped * global;
                let epoch_done = position::steps_left(len, samples, global as usize) == 0;
                self.state.epoch_samples = Some(if epoch_done { 0 } else { samples });
                if epoch_done {
                    self.state.epoch = epoch + 1;
                }
                window.push(&result.loss, &result.heads, self.state.step);
                let in_epoch = done_before + stepped;
                let logged = self.state.step % cfg.log.interval as u64 == 0 || epoch_done;
                if logged {
                    // Before the step's time is taken: on a GPU this is where the host waits
                    // for the device, and the interval's steps must include that wait.
                    self.flush_losses(&mut window, epoch)?;
                }
                times.push(StepTimes { data, total: step_start.elapsed(), marks: result.marks });
                if logged {
                    let at = (epoch, in_epoch);
                    self.log_interval(&mut window, at, lr, times.take(), opts.max_steps, stragglers.as_mut())?;
                }
                if t.checkpoint_steps > 0 && self.state.step % t.checkpoint_steps == 0 {
                    watchdog::set_phase("checkpoint");
                    self.checked_save(&mut window, epoch)?;
                }
                // Mid-epoch, the position saved is this step's: a resume continues from it.
                self.answer_signals(&signals, &mut window, epoch, logged)?;
                watchdog::set_phase("data");
                let last = opts.max_steps.is_some_and(|m| self.state.step >= m);
                if last {
                    self.checked_save(&mut window, epoch)?;
                } else if epoch_done {
                    // The epoch's evaluation and checkpoint, inside its last step's trace.
                    self.end_of_epoch(&mut window, epoch + 1)?;
                }
                let run_end = last || (epoch_done && epoch + 1 >= t.epochs);
                if let Some(tr) = &mut trace {
                    tr.after_step(self.state.step, run_end, &self.dp)?;
                    if !run_end && !epoch_done {
                        tr.before_step(self.state.step + 1, &self.dp)?;
                    }
                }
                if last {
                    super::straggler::report(stragglers.as_ref());
                    return Ok(self.summary(window.last));
                }
                step_start = Instant::now();
            }
        }
        drop(signals);
        self.draw_curves();
        super::straggler::report(stragglers.as_ref());
        Ok(self.summary(window.last))
    }

    /// Evaluation and the epoch checkpoint, as `[eval]` and `train.checkpoint_interval` say.
    fn end_of_epoch(&mut self, window: &mut LossWindow, done: usize) -> anyhow::Result<()> {
        self.flush_losses(window, done - 1)?;
        let t = &self.cfg.train;
        let save = done % t.checkpoint_interval == 0 || done == t.epochs;
        if self.evaluates_after(done) {
            watchdog::set_phase("evaluation");
            let _span = timeline::span("evaluation");
            self.evaluate(done)?;
        }
        if save {
            watchdog::set_phase("checkpoint");
            let _span = timeline::span("checkpoint");
            // Saved at the start of the next epoch's position.
            self.save()?;
        }
        watchdog::set_phase("data");
        Ok(())
    }
}

/// `t` on `device` without making the host wait: on a GPU through pinned memory and an
/// asynchronous copy (a copy from pageable memory waits for everything queued before it,
/// so the GPU would idle while the next step is queued).
fn to_device_async(t: &Tensor, device: tch::Device) -> Tensor {
    match device {
        tch::Device::Cuda(_) => t.pin_memory(device).to_device_(device, t.kind(), true, false),
        _ => t.to_device(device),
    }
}

/// Test hook: `SEGZOO_SAMPLE_LOG=FILE` makes every rank append, per optimiser step, the
/// dataset indices it trained on (`epoch step rank i,j,…`), so a test can check which
/// samples each step saw, across restarts and world sizes.
struct SampleLog {
    file: Option<std::fs::File>,
    rank: usize,
}

impl SampleLog {
    fn from_env(rank: usize) -> Self {
        let file = std::env::var_os("SEGZOO_SAMPLE_LOG")
            .and_then(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).ok());
        SampleLog { file, rank }
    }

    fn write(&self, epoch: usize, step: u64, indices: &[usize]) {
        use std::io::Write;
        if let Some(mut f) = self.file.as_ref() {
            let list: Vec<String> = indices.iter().map(usize::to_string).collect();
            // One write per line (O_APPEND): ranks' lines do not interleave.
            let _ = f.write_all(format!("{epoch} {step} {} {}\n", self.rank, list.join(",")).as_bytes());
        }
    }
}
