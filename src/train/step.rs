//! One training step, shared by the loop (`fit.rs`) and `segzoo bench train`: for each
//! micro-batch, forward under autocast and the loss for either task, backward
//! (accumulating gradients); then gradients averaged over the ranks once, and the
//! optimiser step (skipped on fp16 overflow, as PyTorch's GradScaler).
use super::amp::GradScaler;
use super::clock::{Mark, StepMarks};
use super::data_parallel::DataParallel;
use super::loss::SegLoss;
use super::optim::Optimizer;
use crate::config::Precision;
use crate::models::memory_format::{to_format, MemoryFormat};
use crate::models::{Model, Task};
use crate::timeline;
use tch::{Device, Tensor};

/// What a step needs besides the batch and the mutable optimiser state.
pub struct StepContext<'a> {
    pub model: &'a Model,
    pub loss: &'a SegLoss,
    pub precision: Precision,
    pub dp: &'a DataParallel,
    /// The model's layout; the images are brought to it before the forward.
    pub memory_format: MemoryFormat,
}

/// A step's result. The loss stays on the device: the loop brings it to the host only
/// when it logs or checks it, and the step is timed with marks on the device's own
/// timeline, so a step costs no host synchronisation (but the fp16 overflow check).
pub struct StepResult {
    /// The mean of the micro-batches' losses.
    pub loss: Tensor,
    /// Each weighted head's own (unweighted) loss, averaged like `loss`; empty for a
    /// single head.
    pub heads: Vec<Tensor>,
    /// False when fp16 overflow skipped the optimiser step.
    pub applied: bool,
    /// Start, end of backward (forward and backward of every micro-batch before it), end
    /// of the gradient communication left after backward (all of the all-reduce without
    /// overlap; what backward did not hide with it), end of the optimiser update
    /// (unscaling, the overflow check, the update): `marks.parts()`.
    pub marks: StepMarks,
}

/// Wait for the device's queued work, so that host clocks time it (for traces: CUDA runs
/// ahead of the host otherwise).
pub fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// The loss of `model` on a batch: the weighted heads' cross-entropy (segmentation) or
/// the classifier's cross-entropy (classification).
pub fn forward_loss(model: &Model, loss: &SegLoss, x: &Tensor, y: &Tensor) -> Tensor {
    forward_losses(model, loss, x, y).0
}

/// The loss and, with several weighted heads, each head's own loss.
fn forward_losses(model: &Model, loss: &SegLoss, x: &Tensor, y: &Tensor) -> (Tensor, Vec<Tensor>) {
    let outputs = model.forward_t(x, true);
    match model.task() {
        Task::Segmentation => loss.total_and_heads(&outputs, y),
        Task::Classification => (outputs[0].cross_entropy_for_logits(y), Vec::new()),
    }
}

/// One optimiser step over `batches` (k micro-batches of (images, targets)). Each
/// micro-batch's loss is divided by k, so the accumulated gradient is the one of their
/// union; no collective runs until the last has been backpropagated.
pub fn train_step(
    ctx: &StepContext,
    optim: &mut Optimizer,
    mut scaler: Option<&mut GradScaler>,
    batches: &[(Tensor, Tensor)],
    lr: f64,
) -> anyhow::Result<StepResult> {
    anyhow::ensure!(!batches.is_empty(), "a training step needs at least one micro-batch");
    let device = ctx.model.device();
    let k = batches.len();
    let start = Mark::now(device);
    optim.zero_grad();
    let mut losses = Vec::with_capacity(k);
    let mut heads: Vec<Vec<Tensor>> = Vec::with_capacity(k);
    // Forward and backward apart only in a traced window (it costs a device sync).
    let traced = timeline::active();
    for (i, (x, y)) in batches.iter().enumerate() {
        if i + 1 == k {
            ctx.dp.before_last_backward();
        }
        let forward = timeline::span("forward");
        let x = to_format(x, ctx.memory_format);
        let (loss, head_losses) =
            crate::precision::autocast(device, ctx.precision, || forward_losses(ctx.model, ctx.loss, &x, y))?;
        if traced {
            sync(device);
        }
        drop(forward);
        let _backward = timeline::span("backward");
        // Without accumulation the loss itself is backpropagated (bit for bit as before).
        let part = if k == 1 { loss.shallow_clone() } else { &loss / k as f64 };
        match scaler.as_deref() {
            Some(s) => s.scale_loss(&part).backward(),
            None => part.backward(),
        }
        losses.push(loss.detach());
        heads.push(head_losses.iter().map(Tensor::detach).collect());
        if traced {
            sync(device);
        }
    }
    // Averaged before the overflow check, so every rank skips or steps alike.
    let backward_end = Mark::now(device);
    {
        let _comm = timeline::span("gradient all-reduce (exposed)");
        ctx.dp.finish_gradients(&optim.params)?;
        if traced {
            sync(device);
        }
    }
    let comm_end = Mark::now(device);
    let _optimizer = timeline::span("optimizer");
    let applied = match scaler.as_mut() {
        None => true,
        Some(s) => {
            let params: Vec<Tensor> = optim.params.iter().map(|p| p.tensor.shallow_clone()).collect();
            let finite = s.unscale(&params);
            s.update(finite)
        }
    };
    if applied {
        optim.step(lr);
    }
    ctx.dp.end_step(applied);
    if traced {
        sync(device);
    }
    let marks = StepMarks { start, backward_end, comm_end, end: Mark::now(device) };
    let loss = if k == 1 { losses.swap_remove(0) } else { Tensor::stack(&losses, 0).mean(None) };
    let heads = match heads.len() {
        1 => heads.swap_remove(0),
        _ => (0..heads[0].len())
            .map(|h| Tensor::stack(&heads.iter().map(|m| m[h].shallow_clone()).collect::<Vec<_>>(), 0).mean(None))
            .collect(),
    };
    Ok(StepResult { loss, heads, applied, marks })
}
