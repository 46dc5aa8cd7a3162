//! Optimisers with PyTorch's update rules and inspectable state (for exact resume):
//! SGD (momentum, Nesterov, weight decay), Adam and AdamW.
use crate::config::Optimizer as Kind_;
use tch::Tensor;

pub struct Param {
    pub name: String,
    pub tensor: Tensor,
    /// Whether weight decay applies (biases and norm parameters may be exempt).
    pub decay: bool,
    /// This parameter's learning rate over the schedule's (`train.head_lr_mult` for heads).
    pub lr_mult: f64,
}

pub struct Optimizer {
    pub kind: Kind_,
    pub params: Vec<Param>,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    /// Per parameter: SGD momentum buffer, or Adam's first and second moments.
    state: Vec<Vec<Tensor>>,
    pub steps: i64,
}

impl Optimizer {
    pub fn new(
        kind: Kind_,
        params: Vec<Param>,
        momentum: f64,
        nesterov: bool,
        weight_decay: f64,
        betas: (f64, f64),
        eps: f64,
    ) -> Self {
        let state = params
            .iter()
            .map(|p| {
                let n = if kind == Kind_::Sgd { 1 } else { 2 };
                (0..n).map(|_| p.tensor.zeros_like().detach()).collect()
            })
            .collect();
        Optimizer { kind, params, momentum, nesterov, weight_decay, betas, eps, state, steps: 0 }
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.tensor.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// One update with learning rate `lr`; parameters without a gradient are skipped.
    pub fn step(&mut self, lr: f64) {
        self.steps += 1;
        let t = self.steps as f64;
        tch::no_grad(|| {
            for (p, st) in self.params.iter_mut().zip(&mut self.state) {
                let grad = p.tensor.grad();
                if !grad.defined() {
                    continue;
                }
                // A parameter group's rate, as PyTorch's (AdamW's decay follows it too).
                let lr = lr * p.lr_mult;
                let wd = if p.decay { self.weight_decay } else { 0.0 };
                match self.kind {
                    Kind_::Sgd => {
                        let mut g = if wd != 0.0 { &grad + &p.tensor * wd } else { grad.shallow_clone() };
                        if self.momentum != 0.0 {
                            let buf = &mut st[0];
                            let _ = buf.g_mul_scalar_(self.momentum).g_add_(&g);
                            g = if self.nesterov { g + &*buf * self.momentum } else { buf.shallow_clone() };
                        }
                        let _ = p.tensor.g_add_(&(g * -lr));
                    }
                    Kind_::Adam | Kind_::Adamw => {
                        let g = if self.kind == Kind_::Adam && wd != 0.0 {
                            &grad + &p.tensor * wd
                        } else {
                            grad.shallow_clone()
                        };
                        if self.kind == Kind_::Adamw && wd != 0.0 {
                            let _ = p.tensor.g_mul_scalar_(1.0 - lr * wd);
                        }
                        let (b1, b2) = self.betas;
                        let _ = st[0].g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                        let _ = st[1].g_mul_scalar_(b2).g_add_(&(&g * &g * (1.0 - b2)));
                        let m_hat = &st[0] / (1.0 - b1.powf(t));
                        let v_hat = &st[1] / (1.0 - b2.powf(t));
                        let update = m_hat / (v_hat.sqrt() + self.eps);
                        let _ = p.tensor.g_add_(&(update * -lr));
                    }
                }
            }
        });
    }

    /// Names of the per-parameter state tensors, as PyTorch's optimisers call them.
    fn slot_names(&self) -> &'static [&'static str] {
        if self.kind == Kind_::Sgd {
            &["momentum_buffer"]
        } else {
            &["exp_avg", "exp_avg_sq"]
        }
    }

    /// The state as named tensors (`<param>.<slot>`) plus the step count.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let slots = self.slot_names();
        let mut out: Vec<(String, Tensor)> = self
            .params
            .iter()
            .zip(&self.state)
            .flat_map(|(p, st)| slots.iter().zip(st).map(move |(s, t)| (format!("{}.{s}", p.name), t.shallow_clone())))
            .collect();
        out.push(("steps".into(), Tensor::from(self.steps)));
        out
    }

    /// Restore [`state_tensors`](Self::state_tensors); every slot must be present with the right shape.
    pub fn load_state(&mut self, tensors: &std::collections::HashMap<String, Tensor>) -> anyhow::Result<()> {
        let slots = self.slot_names();
        tch::no_grad(|| -> anyhow::Result<()> {
            for (p, st) in self.params.iter().zip(&mut self.state) {
                for (s, t) in slots.iter().zip(st.iter_mut()) {
                    let key = format!("{}.{s}", p.name);
                    let src = tensors.get(&key).ok_or_else(|| {
                        anyhow::anyhow!("optimizer state has no `{key}` (another optimizer or model?)")
                    })?;
                    if src.size() != t.size() {
                        anyhow::bail!("optimizer state `{key}` has shape {:?}, expected {:?}", src.size(), t.size());
                    }
                    t.copy_(&src.to_device(t.device()).to_kind(t.kind()));
                }
            }
            Ok(())
        })?;
        self.steps = tensors
            .get("steps")
            .map(|t| t.int64_value(&[]))
            .ok_or_else(|| anyhow::anyhow!("optimizer state has no step count"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn param(v: &[f32]) -> Tensor {
        Tensor::from_slice(v).set_requires_grad(true)
    }

    fn run(kind: Kind_, momentum: f64, nesterov: bool, wd: f64, steps: usize) -> Vec<f32> {
        let p = param(&[1.0, -2.0]);
        let mut opt = Optimizer::new(
            kind,
            vec![Param { name: "w".into(), tensor: p.shallow_clone(), decay: true, lr_mult: 1.0 }],
            momentum,
            nesterov,
            wd,
            (0.9, 0.999),
            1e-8,
        );
        for _ in 0..steps {
            opt.zero_grad();
            (&p * &p).sum(Kind::Float).backward(); // grad = 2p
            opt.step(0.1);
        }
        Vec::<f32>::try_from(p.detach().to_device(Device::Cpu)).expect("values")
    }

    #[test]
    fn sgd_matches_hand_computation() {
        // Plain SGD: p ← p − 0.1·2p = 0.8p per step.
        let got = run(Kind_::Sgd, 0.0, false, 0.0, 2);
        assert!((got[0] - 0.64).abs() < 1e-6 && (got[1] + 1.28).abs() < 1e-6, "{got:?}");
        // Momentum 0.9: step 1 buf = 2, p = 0.8; step 2 g = 1.6, buf = 3.4, p = 0.8 − 0.34 = 0.46.
        let got = run(Kind_::Sgd, 0.9, false, 0.0, 2);
        assert!((got[0] - 0.46).abs() < 1e-6, "{got:?}");
        // Nesterov: step 1 g' = 2 + 0.9·2 = 3.8, p = 0.62.
        let got = run(Kind_::Sgd, 0.9, true, 0.0, 1);
        assert!((got[0] - 0.62).abs() < 1e-6, "{got:?}");
        // Weight decay 0.5 adds 0.5p to the gradient: p = 1 − 0.1·2.5 = 0.75.
        let got = run(Kind_::Sgd, 0.0, false, 0.5, 1);
        assert!((got[0] - 0.75).abs() < 1e-6, "{got:?}");
    }

    #[test]
    fn adam_first_step_is_lr_sized() {
        // Bias-corrected first step: update = lr · g/|g| = 0.1 · sign(g).
        let got = run(Kind_::Adam, 0.0, false, 0.0, 1);
        assert!((got[0] - 0.9).abs() < 1e-5 && (got[1] + 1.9).abs() < 1e-5, "{got:?}");
        // AdamW decays the weight directly: p·(1 − 0.1·0.5) − 0.1.
        let got = run(Kind_::Adamw, 0.0, false, 0.5, 1);
        assert!((got[0] - 0.85).abs() < 1e-5, "{got:?}");
    }

    #[test]
    fn a_head_parameter_steps_at_its_multiple_of_the_rate() {
        let (backbone, head) = (param(&[1.0]), param(&[1.0]));
        let p = |name: &str, t: &Tensor, lr_mult| Param {
            name: name.into(),
            tensor: t.shallow_clone(),
            decay: true,
            lr_mult,
        };
        let params = vec![p("layer1.w", &backbone, 1.0), p("last_layer.w", &head, 10.0)];
        let mut opt = Optimizer::new(Kind_::Sgd, params, 0.0, false, 0.0, (0.9, 0.999), 1e-8);
        (&backbone * &backbone + &head * &head).sum(Kind::Float).backward();
        opt.step(0.01);
        // p − lr·mult·2p: 0.98 and 0.8.
        assert!((backbone.double_value(&[0]) - 0.98).abs() < 1e-6 && (head.double_value(&[0]) - 0.8).abs() < 1e-6);
    }
}
