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

/// Training-mode BatchNorm of `x` with statistics over the group, as
/// `torch.nn.SyncBatchNorm`: one sum over the ranks per layer, of [Σx, Σx², n] per channel
/// in f64 (and in backward one of their gradients). The count is made on `x`'s device, so
/// nothing waits for the host.
///
/// bf16/fp16 inputs are summed, squared and normalised in fp32. Σx² is taken about the
/// local mean c: Σx² = Σ(x−c)² + 2cΣx − nc² holds for any c, and with c near the mean
/// neither the squares' rounding nor the cancellation of Σx²/n − mean² inflates the
/// variance of a channel whose mean is far from zero.
pub fn train_forward(bn: &BnState, x: &Tensor, group_sum: &dyn Fn(&Tensor) -> Tensor) -> Tensor {
    let c = x.size()[1];
    let shape = [1, c, 1, 1];
    let dims: &[i64] = &[0, 2, 3];
    let local_count = if c > 0 { x.numel() as f64 / c as f64 } else { 0.0 };
    let xf = match x.kind() {
        Kind::Half | Kind::BFloat16 => x.to_kind(Kind::Float),
        _ => x.shallow_clone(),
    };
    let sum = xf.sum_dim_intlist(dims, false, Kind::Double);
    // Σx²'s value, about the local mean and without autograd: nothing of it is kept for backward.
    let squares = tch::no_grad(|| {
        let centre = &sum / local_count.max(1.0);
        let q = (&xf - centre.to_kind(xf.kind()).view(shape)).square().sum_dim_intlist(dims, false, Kind::Double);
        let centre = centre.to_kind(xf.kind()).to_kind(Kind::Double);
        q + &centre * &sum * 2.0 - centre.square() * local_count
    });
    // Its gradient, d(Σx²)/dx = 2x, through a product whose backward keeps only `x` itself
    // (which the output's product keeps anyway); the difference adds exactly zero.
    let tangent = (&xf * x.detach()).sum_dim_intlist(dims, false, Kind::Double) * 2.0;
    let squares = squares + (&tangent - tangent.detach());
    let count = Tensor::full([1], local_count, (Kind::Double, x.device()));
    let stats = group_sum(&Tensor::cat(&[sum, squares, count], 0));
    let n = stats.narrow(0, 2 * c, 1).detach();
    let mean = stats.narrow(0, 0, c) / &n;
    let var = (stats.narrow(0, c, c) / &n - mean.square()).clamp_min(0.0);
    let invstd = (&var + bn.eps).rsqrt().to_kind(Kind::Float);
    // y = x·α + β with α = invstd·γ, β = b − μ·α: the form (and so the rounding) of
    // libtorch's BatchNorm kernel, which keeps a world-of-N run next to one process's. In
    // fp32 for reduced-precision inputs (a tensor of them times an fp32 tensor is fp32):
    // x·α and β nearly cancel where |μ| ≫ σ.
    let alpha = &invstd * bn.weight;
    let beta = bn.bias - mean.to_kind(Kind::Float) * &alpha;
    let y = (x * alpha.view(shape) + beta.view(shape)).to_kind(x.kind());
    tch::no_grad(|| {
        let m = bn.momentum;
        // Unbiased, over every rank's samples, as one process with the whole batch would.
        let unbiased = &var * &n / (&n - 1.0).clamp_min(1.0);
        let _ = bn.running_mean.shallow_clone().g_mul_scalar_(1.0 - m).g_add_(&(mean.to_kind(Kind::Float) * m));
        let _ = bn.running_var.shallow_clone().g_mul_scalar_(1.0 - m).g_add_(&(unbiased.to_kind(Kind::Float) * m));
    });
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn state<'a>(w: &'a Tensor, b: &'a Tensor, rm: &'a Tensor, rv: &'a Tensor) -> BnState<'a> {
        BnState { weight: w, bias: b, running_mean: rm, running_var: rv, momentum: 0.1, eps: 1e-5 }
    }

    /// bf16 activations whose mean is far from zero beside their spread (100.3 ± 0.5): the
    /// batch variance and the normalised output are those of the bf16 values themselves
    /// in f64. Centred in bf16 (the mean rounded to bf16's grid, 0.5 apart there) the
    /// variance came out 20 % too large, and x·α + β in bf16 lost the output altogether.
    #[test]
    fn bf16_inputs_far_from_zero_get_their_exact_variance_and_a_normalised_output() {
        tch::manual_seed(11);
        let (means, stds) = ([100.3f32, -37.7, 0.2], [0.5f32, 0.3, 1.0]);
        let z = Tensor::randn([4, 3, 8, 8], (Kind::Float, Device::Cpu));
        let x = (z * Tensor::from_slice(&stds).view([1, 3, 1, 1]) + Tensor::from_slice(&means).view([1, 3, 1, 1]))
            .to_kind(Kind::BFloat16);
        let (w, b) = (Tensor::ones([3], (Kind::Float, Device::Cpu)), Tensor::zeros([3], (Kind::Float, Device::Cpu)));
        let (rm, rv) = (Tensor::zeros([3], (Kind::Float, Device::Cpu)), Tensor::ones([3], (Kind::Float, Device::Cpu)));
        let y = train_forward(&state(&w, &b, &rm, &rv), &x, &|t: &Tensor| t.shallow_clone());
        assert_eq!(y.kind(), Kind::BFloat16);
        let x64 = x.to_kind(Kind::Double).transpose(0, 1).reshape([3, -1]);
        let want = x64.var_dim(1, true, false);
        // running_var = 0.9 · 1 + 0.1 · unbiased batch variance.
        let got = (rv.to_kind(Kind::Double) - 0.9) / 0.1;
        let rel = ((&got - &want).abs() / &want).max().double_value(&[]);
        assert!(rel < 1e-4, "variance {got:?} vs {want:?}: relative error {rel}");
        let y64 = y.to_kind(Kind::Double).transpose(0, 1).reshape([3, -1]);
        let (ymean, ystd) = (y64.mean_dim(1, false, Kind::Double), y64.std_dim(1, false, false));
        assert!(ymean.abs().max().double_value(&[]) < 0.02, "output means {ymean:?}");
        assert!((ystd - 1.0).abs().max().double_value(&[]) < 0.02, "output spreads");
    }
}
