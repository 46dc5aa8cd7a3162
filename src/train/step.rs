//! One training step, shared by the loop (`fit.rs`) and `segzoo bench train`: forward
//! under autocast, the loss for either task, backward, gradients averaged over the
//! ranks, and the optimiser step (skipped on fp16 overflow, as PyTorch's GradScaler).
use super::amp::{self, GradScaler};
use super::data_parallel::DataParallel;
use super::loss::SegLoss;
use super::optim::Optimizer;
use crate::config::Precision;
use crate::models::{Model, Task};
use tch::Tensor;

/// What a step needs besides the batch and the mutable optimiser state.
pub struct StepContext<'a> {
    pub model: &'a Model,
    pub loss: &'a SegLoss,
    pub precision: Precision,
    pub dp: &'a DataParallel,
}

/// A step's result. The loss stays on the device: the loop brings it to the host only
/// when it logs or checks it, so a step costs no host synchronisation.
pub struct StepResult {
    pub loss: Tensor,
    /// False when fp16 overflow skipped the optimiser step.
    pub applied: bool,
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

pub fn train_step(
    ctx: &StepContext,
    optim: &mut Optimizer,
    scaler: Option<&mut GradScaler>,
    x: &Tensor,
    y: &Tensor,
    lr: f64,
) -> anyhow::Result<StepResult> {
    let device = ctx.model.device();
    let loss = amp::autocast(device, ctx.precision, || forward_loss(ctx.model, ctx.loss, x, y))?;
    optim.zero_grad();
    let applied = match scaler {
        None => {
            loss.backward();
            ctx.dp.average_gradients(&optim.params)?;
            optim.step(lr);
            true
        }
        Some(scaler) => {
            scaler.scale_loss(&loss).backward();
            // Averaged before the overflow check, so every rank skips or steps alike.
            ctx.dp.average_gradients(&optim.params)?;
            let params: Vec<Tensor> = optim.params.iter().map(|p| p.tensor.shallow_clone()).collect();
            let finite = scaler.unscale(&params);
            let applied = scaler.update(finite);
            if applied {
                optim.step(lr);
            }
            applied
        }
    };
    Ok(StepResult { loss: loss.detach(), applied })
}
