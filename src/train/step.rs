//! One training step, shared by the loop (`fit.rs`) and `segzoo bench train`: for each
//! micro-batch, forward under autocast and the loss for either task, backward
//! (accumulating gradients); then gradients averaged over the ranks once, and the
//! optimiser step (skipped on fp16 overflow, as PyTorch's GradScaler).
use super::amp::{self, GradScaler};
use super::data_parallel::DataParallel;
use super::loss::SegLoss;
use super::optim::Optimizer;
use crate::config::Precision;
use crate::models::memory_format::{to_format, MemoryFormat};
use crate::models::{Model, Task};
use tch::Tensor;

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
/// when it logs or checks it, so a step costs no host synchronisation.
pub struct StepResult {
    /// The mean of the micro-batches' losses.
    pub loss: Tensor,
    /// False when fp16 overflow skipped the optimiser step.
    pub applied: bool,
    /// Time spent waiting for gradient communication after backward ended (all of the
    /// all-reduce without overlap; what backward did not hide with it).
    pub exposed_comm: std::time::Duration,
}

/// The loss of `model` on a batch: the weighted heads' cross-entropy (segmentation) or
/// the classifier's cross-entropy (classification).
pub fn forward_loss(model: &Model, loss: &SegLoss, x: &Tensor, y: &Tensor) -> Tensor {
    let outputs = model.forward_t(x, true);
    match model.task() {
        Task::Segmentation => loss.total(&outputs, y),
        Task::Classification => outputs[0].cross_entropy_for_logits(y),
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
    optim.zero_grad();
    let mut losses = Vec::with_capacity(k);
    for (i, (x, y)) in batches.iter().enumerate() {
        if i + 1 == k {
            ctx.dp.before_last_backward();
        }
        let x = to_format(x, ctx.memory_format);
        let loss = amp::autocast(device, ctx.precision, || forward_loss(ctx.model, ctx.loss, &x, y))?;
        // Without accumulation the loss itself is backpropagated (bit for bit as before).
        let part = if k == 1 { loss.shallow_clone() } else { &loss / k as f64 };
        match scaler.as_deref() {
            Some(s) => s.scale_loss(&part).backward(),
            None => part.backward(),
        }
        losses.push(loss.detach());
    }
    // Averaged before the overflow check, so every rank skips or steps alike.
    let backward_end = std::time::Instant::now();
    ctx.dp.finish_gradients(&optim.params)?;
    let exposed_comm = backward_end.elapsed();
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
    let loss = if k == 1 { losses.swap_remove(0) } else { Tensor::stack(&losses, 0).mean(None) };
    Ok(StepResult { loss, applied, exposed_comm })
}
