//! A differentiable sum over the ranks (csrc/group_sum.cpp): the forward all-reduces a
//! tensor, the backward all-reduces its gradient. SyncBatchNorm sums its batch statistics
//! with it, so autograd derives the cross-rank backward of `torch.nn.SyncBatchNorm`.
//!
//! The backward runs inside `loss.backward()`: on the calling thread for CPU tensors (MPI
//! allows only that thread), on the device's autograd thread for CUDA ones (NCCL allows
//! any thread; the caller is blocked in `backward` meanwhile, so the communicator is never
//! used from two threads at once).
use super::Comm;
use crate::models::sync_bn::GroupSum;
use std::ffi::c_void;
use std::rc::Rc;
use tch::Tensor;

type SumCallback = extern "C" fn(user: *mut c_void, t: *mut c_void);

extern "C" {
    fn segzoo_group_sum(x: *mut c_void, cb: SumCallback, user: *mut c_void) -> *mut c_void;
}

/// Called by the shim with `user` = the `Comm` behind [`group_sum`]'s `Rc` and `t` a
/// libtorch tensor to sum in place. A failed collective ends the job here: an error cannot
/// cross the C++ autograd engine, and the other ranks would wait for this one forever.
extern "C" fn sum_in_place(user: *mut c_void, t: *mut c_void) {
    let outcome = std::panic::catch_unwind(|| {
        // SAFETY: `user` points at the Comm owned by the closure that started this
        // autograd graph, which lives as long as the model; `t` is a live at::Tensor.
        let comm = unsafe { &*(user as *const Comm) };
        let mut t = unsafe { Tensor::clone_from_ptr(t as *mut _) };
        super::watchdog::within("SyncBatchNorm", || comm.all_reduce_sum(&mut t))
            .map_err(|e| (comm.rank(), comm.size(), e))
    });
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err((rank, size, e))) => {
            eprintln!("error: rank {rank}/{size} failed: SyncBatchNorm all-reduce: {e:#}");
            std::process::abort();
        }
        Err(_) => {
            eprintln!("error: SyncBatchNorm all-reduce panicked");
            std::process::abort();
        }
    }
}

/// The differentiable sum over `comm`'s ranks, as SyncBatchNorm takes it.
pub fn group_sum(comm: Comm) -> GroupSum {
    let comm = Rc::new(comm);
    Rc::new(move |x: &Tensor| {
        let user = Rc::as_ptr(&comm) as *mut c_void;
        // SAFETY: the shim returns a new tensor the caller owns, or null on failure.
        let out = unsafe { segzoo_group_sum(x.as_ptr() as *mut c_void, sum_in_place, user) };
        assert!(!out.is_null(), "segzoo_group_sum failed (see stderr)");
        unsafe { Tensor::from_ptr(out as *mut _) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::layers::{BatchNorm2d, Scope};
    use tch::{nn, Device, Kind};

    /// Over a group of one, the synchronized forward and its autograd backward through the
    /// shim equal plain BatchNorm's: outputs, input gradients, γ and β gradients, running stats.
    #[test]
    fn sync_bn_over_one_rank_equals_plain_batch_norm_forward_and_backward() {
        tch::manual_seed(3);
        let run = |sync: bool| {
            let vs = nn::VarStore::new(Device::Cpu);
            let scope = Scope::root(vs.root(), false);
            let bn = BatchNorm2d::new(&scope, 3);
            tch::no_grad(|| {
                bn.weight.shallow_clone().copy_(&Tensor::from_slice(&[0.5f32, 1.5, -2.0]));
                bn.bias.shallow_clone().copy_(&Tensor::from_slice(&[0.1f32, -0.2, 0.3]));
            });
            if sync {
                scope.sync.set(Some(group_sum(crate::distributed::collective::single())));
            }
            let x =
                (Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, Device::Cpu)).view([2, 3, 4, 5]) * 0.37).sin() * 3.0 + 1.0;
            let x = x.set_requires_grad(true);
            let y = bn.forward(&x, true);
            let w = (Tensor::arange(y.numel() as i64, (Kind::Float, Device::Cpu)).view([2, 3, 4, 5]) * 0.11).cos();
            (&y * &w).sum(Kind::Float).backward();
            (y.detach(), x.grad(), bn.weight.grad(), bn.bias.grad(), bn.running_mean.copy(), bn.running_var.copy())
        };
        let (plain, sync) = (run(false), run(true));
        let diff = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
        assert!(diff(&plain.0, &sync.0) < 1e-5, "outputs");
        assert!(diff(&plain.1, &sync.1) < 1e-5, "input gradients differ by {}", diff(&plain.1, &sync.1));
        assert!(diff(&plain.2, &sync.2) < 1e-5, "γ gradients");
        assert!(diff(&plain.3, &sync.3) < 1e-5, "β gradients");
        assert!(diff(&plain.4, &sync.4) < 1e-6, "running mean");
        assert!(diff(&plain.5, &sync.5) < 1e-6, "running var");
    }

    /// A group of one that counts its all-reduces.
    #[derive(Default)]
    struct Counting(std::cell::Cell<usize>);

    impl crate::distributed::Collective for Counting {
        fn kind(&self) -> crate::distributed::BackendKind {
            crate::distributed::BackendKind::Gloo
        }
        fn rank(&self) -> usize {
            0
        }
        fn size(&self) -> usize {
            1
        }
        fn all_reduce_sum(&self, _t: &mut Tensor) -> anyhow::Result<()> {
            self.0.set(self.0.get() + 1);
            Ok(())
        }
        fn broadcast(&self, _t: &mut Tensor, _root: usize) -> anyhow::Result<()> {
            Ok(())
        }
        fn all_gather(&self, t: &Tensor) -> anyhow::Result<Tensor> {
            Ok(t.unsqueeze(0).copy())
        }
        fn barrier(&self) -> anyhow::Result<()> {
            Ok(())
        }
        fn abort(&self, code: i32) -> ! {
            std::process::exit(code)
        }
    }

    /// As torch.nn.SyncBatchNorm: one collective per layer in forward (mean, squares and
    /// count together) and one in backward.
    #[test]
    fn sync_bn_sums_over_the_ranks_once_per_layer_in_forward_and_once_in_backward() {
        let counter = Rc::new(Counting::default());
        let vs = nn::VarStore::new(Device::Cpu);
        let scope = Scope::root(vs.root(), false);
        let bn = BatchNorm2d::new(&scope, 4);
        scope.sync.set(Some(group_sum(counter.clone())));
        let x = Tensor::randn([2, 4, 3, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let y = bn.forward(&x, true);
        assert_eq!(counter.0.get(), 1, "forward");
        (&y * y.randn_like()).sum(Kind::Float).backward();
        assert_eq!(counter.0.get(), 2, "forward and backward");
        assert!(x.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0, "a gradient reached the input");
    }
}
