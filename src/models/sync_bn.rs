//! Synchronized BatchNorm, as `torch.nn.SyncBatchNorm`: in training, each BatchNorm layer's
//! batch mean and variance are taken over every rank's samples (ranks may hold different
//! batch sizes, zero included), and the running statistics are updated with the global
//! unbiased variance. The sums over the ranks go through a differentiable group sum
//! (installed by the trainer, `crate::distributed::group_sum`), so the backward is autograd's.
//! Eval mode and the state dict are those of plain BatchNorm.
use std::cell::RefCell;
use std::rc::Rc;
use tch::{Kind, Tensor};

/// Sums a tensor over the ranks, differentiably.
pub type GroupSum = Rc<dyn Fn(&Tensor) -> Tensor>;

/// Shared by every BatchNorm layer of a model: when set, training-mode BN synchronizes.
#[derive(Clone, Default)]
pub struct SyncSlot(Rc<RefCell<Option<GroupSum>>>);

impl SyncSlot {
    pub fn set(&self, sum: Option<GroupSum>) {
        *self.0.borrow_mut() = sum;
    }

    pub fn get(&self) -> Option<GroupSum> {
        self.0.borrow().clone()
    }
}

impl std::fmt::Debug for SyncSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SyncSlot({})", if self.0.borrow().is_some() { "synchronized" } else { "local" })
    }
}

/// A BatchNorm layer's parameters and running statistics, as the synchronized forward
/// reads and updates them (`layers::BatchNorm2d` lends its own).
pub struct BnState<'a> {
    pub weight: &'a Tensor,
    pub bias: &'a Tensor,
    pub running_mean: &'a Tensor,
    pub running_var: &'a Tensor,
    pub momentum: f64,
    pub eps: f64,
}

/// Training-mode BatchNorm of `x` with statistics over the group. Sums are taken in f64
/// (two passes: mean, then squared deviations), which keeps them as precise as one
/// process's BatchNorm over the whole batch.
pub fn train_forward(bn: &BnState, x: &Tensor, group_sum: &dyn Fn(&Tensor) -> Tensor) -> Tensor {
    let c = x.size()[1];
    let shape = [1, c, 1, 1];
    let dims: &[i64] = &[0, 2, 3];
    let local_count = if c > 0 { x.numel() as f64 / c as f64 } else { 0.0 };
    // Per-channel sums and this rank's element count, summed over the ranks in one call.
    let count = Tensor::from_slice(&[local_count]).to_device(x.device());
    let stats = group_sum(&Tensor::cat(&[x.sum_dim_intlist(dims, false, Kind::Double), count], 0));
    let n = stats.narrow(0, c, 1).detach();
    let mean = stats.narrow(0, 0, c) / &n;
    let centered = x - mean.to_kind(x.kind()).view(shape);
    let var = group_sum(&centered.square().sum_dim_intlist(dims, false, Kind::Double)) / &n;
    let invstd = (&var + bn.eps).rsqrt().to_kind(Kind::Float);
    // y = x·α + β with α = invstd·γ, β = b − μ·α: the form (and so the rounding) of
    // libtorch's BatchNorm kernel, which keeps a world-of-N run next to one process's.
    let alpha = &invstd * bn.weight;
    let beta = bn.bias - mean.to_kind(Kind::Float) * &alpha;
    let y = x * alpha.to_kind(x.kind()).view(shape) + beta.to_kind(x.kind()).view(shape);
    tch::no_grad(|| {
        let m = bn.momentum;
        // Unbiased, over every rank's samples, as one process with the whole batch would.
        let unbiased = &var * &n / (&n - 1.0).clamp_min(1.0);
        let _ = bn.running_mean.shallow_clone().g_mul_scalar_(1.0 - m).g_add_(&(mean.to_kind(Kind::Float) * m));
        let _ = bn.running_var.shallow_clone().g_mul_scalar_(1.0 - m).g_add_(&(unbiased.to_kind(Kind::Float) * m));
    });
    y
}
