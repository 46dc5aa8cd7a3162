//! `segzoo bench infer`: the forward pass alone, timed for the plain (training) form and
//! the deploy form (BatchNorm folded, channels-last where it is faster), so the gain
//! shows; the two forms' outputs are compared on the same input.
use crate::distributed::device::synchronize;
use crate::models::Model;
use std::time::Instant;
use tch::Tensor;

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct InferTiming {
    pub ms_per_batch: f64,
    pub img_per_s: f64,
}

/// Times `iters` forwards of `model` on `x` after two warm-up passes, without autograd.
pub fn time_forward(model: &Model, x: &Tensor, iters: usize, run: &dyn Fn(&Tensor) -> Tensor) -> InferTiming {
    tch::no_grad(|| {
        for _ in 0..2 {
            let _ = run(x);
        }
        synchronize(model.device());
        let start = Instant::now();
        for _ in 0..iters {
            let _ = run(x);
        }
        synchronize(model.device());
        let secs = start.elapsed().as_secs_f64();
        let n = iters.max(1) as f64;
        InferTiming { ms_per_batch: 1000.0 * secs / n, img_per_s: n * x.size()[0] as f64 / secs }
    })
}
