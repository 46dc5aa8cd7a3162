//! Building blocks with PyTorch's state-dict names and order: Conv2d, BatchNorm2d
//! (with `num_batches_tracked`), Linear. `Scope` records every tensor name in
//! creation order, which is the order of the official state dicts.
use std::cell::RefCell;
use std::rc::Rc;
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

/// A state-dict entry as the scope created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// A parameter (as opposed to a buffer), whether or not it is trained.
    pub is_param: bool,
}

/// A naming scope over a tch `nn::Path` that logs names in creation order.
#[derive(Clone)]
pub struct Scope<'a> {
    path: nn::Path<'a>,
    prefix: String,
    order: Rc<RefCell<Vec<Entry>>>,
    /// BatchNorm layers always use running statistics and do not train γ, β.
    pub freeze_bn: bool,
    /// Shared by the model's BatchNorm layers: set, they synchronize over the ranks.
    pub sync: super::sync_bn::SyncSlot,
    /// The deploy form's folded convolutions and BatchNorms, by module name.
    pub fusion: super::fusion::FusionSlots,
    /// Whose operator semantics the modules follow.
    pub numerics: super::Numerics,
}

impl<'a> Scope<'a> {
    pub fn root(path: nn::Path<'a>, freeze_bn: bool) -> Self {
        Scope {
            path,
            prefix: String::new(),
            order: Rc::new(RefCell::new(Vec::new())),
            freeze_bn,
            sync: Default::default(),
            fusion: Default::default(),
            numerics: Default::default(),
        }
    }

    /// This root scope with `numerics`.
    pub fn with_numerics(self, numerics: super::Numerics) -> Self {
        Scope { numerics, ..self }
    }

    pub fn sub<T: ToString>(&self, name: T) -> Scope<'a> {
        let name = name.to_string();
        Scope {
            path: self.path.sub(&name),
            prefix: format!("{}{name}.", self.prefix),
            order: self.order.clone(),
            freeze_bn: self.freeze_bn,
            sync: self.sync.clone(),
            fusion: self.fusion.clone(),
            numerics: self.numerics,
        }
    }

    fn log(&self, name: &str, is_param: bool) {
        self.order.borrow_mut().push(Entry { name: format!("{}{name}", self.prefix), is_param });
    }

    pub fn param(&self, name: &str, dims: &[i64], init: Init) -> Tensor {
        self.log(name, true);
        self.path.var(name, dims, init)
    }

    /// A parameter that is not trained (no gradient, not in the trainable set).
    pub fn frozen_param(&self, name: &str, t: Tensor) -> Tensor {
        self.log(name, true);
        self.path.add(name, t.to_device(self.path.device()), false)
    }

    pub fn buffer(&self, name: &str, t: Tensor) -> Tensor {
        self.log(name, false);
        self.path.add(name, t.to_device(self.path.device()), false)
    }

    /// This scope's module name (`layer1.0.conv1`).
    pub fn name(&self) -> &str {
        self.prefix.strip_suffix('.').unwrap_or(&self.prefix)
    }

    /// Entries created so far, in order.
    pub fn entries(&self) -> Vec<Entry> {
        self.order.borrow().clone()
    }
}

#[derive(Debug)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    stride: i64,
    padding: i64,
    groups: i64,
    /// Weight and bias with a BatchNorm folded in (the deploy form), used in eval mode.
    folded: super::fusion::ConvSlot,
}

/// He-normal (fan-out) for convolutions, as torchvision does for ReLU networks.
const CONV_INIT: Init = Init::Kaiming {
    dist: nn::init::NormalOrUniform::Normal,
    fan: nn::init::FanInOut::FanOut,
    non_linearity: nn::init::NonLinearity::ReLU,
};

impl Conv2d {
    pub fn new(s: &Scope, cin: i64, cout: i64, k: i64, stride: i64, padding: i64, bias: bool) -> Self {
        Self::grouped(s, cin, cout, k, stride, padding, 1, bias)
    }

    /// A grouped convolution (`groups == cin` is depthwise).
    #[allow(clippy::too_many_arguments)]
    pub fn grouped(s: &Scope, cin: i64, cout: i64, k: i64, stride: i64, padding: i64, groups: i64, bias: bool) -> Self {
        let weight = s.param("weight", &[cout, cin / groups, k, k], CONV_INIT);
        let bias = bias.then(|| s.param("bias", &[cout], Init::Const(0.0)));
        Conv2d { weight, bias, stride, padding, groups, folded: s.fusion.conv(s.name()) }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        // Only a deploy-form model (eval only, `Model::forward_t` checks) has folded weights.
        if let Some((w, b)) = &*self.folded.borrow() {
            return x.conv2d(w, Some(b), [self.stride], [self.padding], [1], self.groups);
        }
        x.conv2d(&self.weight, self.bias.as_ref(), [self.stride], [self.padding], [1], self.groups)
    }
}

/// 3×3 convolution with padding 1.
pub fn conv3x3(s: &Scope, cin: i64, cout: i64, stride: i64, bias: bool) -> Conv2d {
    Conv2d::new(s, cin, cout, 3, stride, 1, bias)
}

pub fn conv1x1(s: &Scope, cin: i64, cout: i64, bias: bool) -> Conv2d {
    Conv2d::new(s, cin, cout, 1, 1, 0, bias)
}

#[derive(Debug)]
pub struct BatchNorm2d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub num_batches_tracked: Tensor,
    pub(crate) momentum: f64,
    pub(crate) eps: f64,
    frozen: bool,
    sync: super::sync_bn::SyncSlot,
    /// Folded into the convolution before it (the deploy form): an identity.
    folded: super::fusion::BnSlot,
}

impl BatchNorm2d {
    /// PyTorch defaults: momentum 0.1, eps 1e-5; γ = 1, β = 0.
    pub fn new(s: &Scope, c: i64) -> Self {
        Self::with_gamma(s, c, 1.0)
    }

    /// With γ initialised to `gamma` (0 for the last BN of a residual branch).
    pub fn with_gamma(s: &Scope, c: i64, gamma: f64) -> Self {
        let cpu = tch::Device::Cpu;
        let (weight, bias) = if s.freeze_bn {
            let w = s.frozen_param("weight", Tensor::full([c], gamma, (Kind::Float, cpu)));
            (w, s.frozen_param("bias", Tensor::zeros([c], (Kind::Float, cpu))))
        } else {
            (s.param("weight", &[c], Init::Const(gamma)), s.param("bias", &[c], Init::Const(0.0)))
        };
        BatchNorm2d {
            weight,
            bias,
            running_mean: s.buffer("running_mean", Tensor::zeros([c], (Kind::Float, cpu))),
            running_var: s.buffer("running_var", Tensor::ones([c], (Kind::Float, cpu))),
            num_batches_tracked: s.buffer("num_batches_tracked", Tensor::zeros([], (Kind::Int64, cpu))),
            momentum: 0.1,
            eps: 1e-5,
            frozen: s.freeze_bn,
            sync: s.sync.clone(),
            folded: s.fusion.bn(s.name()),
        }
    }

    /// Batch statistics (and running-stat updates) when `train` — over every rank when
    /// the model synchronizes BN — running statistics otherwise; a frozen BN always uses
    /// its running statistics.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        if self.folded.get() {
            return x.shallow_clone();
        }
        let train = train && !self.frozen;
        if train {
            tch::no_grad(|| {
                let _ = self.num_batches_tracked.shallow_clone().g_add_scalar_(1);
            });
            if let Some(sum) = self.sync.get() {
                let state = super::sync_bn::BnState {
                    weight: &self.weight,
                    bias: &self.bias,
                    running_mean: &self.running_mean,
                    running_var: &self.running_var,
                    momentum: self.momentum,
                    eps: self.eps,
                };
                return super::sync_bn::train_forward(&state, x, &*sum);
            }
        }
        Tensor::batch_norm(
            x,
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            self.momentum,
            self.eps,
            true,
        )
    }
}

#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Linear {
    pub fn new(s: &Scope, cin: i64, cout: i64) -> Self {
        let bound = 1.0 / (cin as f64).sqrt();
        Linear {
            weight: s.param("weight", &[cout, cin], nn::init::DEFAULT_KAIMING_UNIFORM),
            bias: s.param("bias", &[cout], Init::Uniform { lo: -bound, up: bound }),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, Some(&self.bias))
    }
}

/// Conv → BN (→ ReLU), registered as `<scope>.{conv_idx}` and `<scope>.{bn_idx}`.
#[derive(Debug)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub bn: BatchNorm2d,
    pub relu: bool,
}

impl ConvBn {
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let y = self.bn.forward(&self.conv.forward(x), train);
        if self.relu {
            y.relu()
        } else {
            y
        }
    }
}

/// Bilinear resize to an exact size, as `F.interpolate(..., size=, mode='bilinear')`.
pub fn resize_bilinear(x: &Tensor, h: i64, w: i64, align_corners: bool) -> Tensor {
    let size = x.size();
    if size[2] == h && size[3] == w {
        return x.shallow_clone();
    }
    x.upsample_bilinear2d([h, w], align_corners, None, None)
}
