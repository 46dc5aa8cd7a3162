//! Gradient all-reduce overlapped with backward, as PyTorch DDP's reducer. Gradients are
//! packed into the buckets of the after-backward path (`buckets::plan` over the
//! parameters in reverse registration order, the order backward produces them). Each
//! parameter's gradient-ready hook (csrc/grad_hook.cpp) counts down its bucket, and full
//! buckets go, strictly in bucket order (the same on every rank), to the backend's
//! background summer (c10d: asynchronous work; MPI: a thread with a communicator of its
//! own), while backward goes on. For a CUDA model the hooks run on autograd's device thread
//! while the caller is blocked in `backward`, so the state below is never touched from two
//! threads at once. After backward, buckets still open are sent with zeros for gradients that never came
//! (unused heads), as the after-backward path does; then every sum is awaited, scaled and
//! copied back. Same buckets, same sums: the results equal the after-backward path's.
//! A bucket crosses the wire as the codec says (`compression.rs`): PowerSGD's second round
//! (its Q factors) is sent once the first round's sums are in, after backward.
use super::buckets;
use super::collective::BackgroundSum;
use super::compression::Codec;
use std::cell::RefCell;
use std::ffi::c_void;
use std::rc::Rc;
use tch::Tensor;

type ReadyCallback = extern "C" fn(user: *mut c_void, index: i64);

extern "C" {
    fn segzoo_set_grad_ready_hook(param: *mut c_void, cb: ReadyCallback, user: *mut c_void, index: i64) -> bool;
    fn segzoo_clear_grad_ready_hook(param: *mut c_void) -> bool;
}

#[derive(Default)]
struct Progress {
    /// Hooks count only while armed (the last micro-batch's backward).
    armed: bool,
    /// Gradients still missing, per bucket.
    missing: Vec<usize>,
    /// The next bucket to send.
    next: usize,
    /// The first failure to send, reported after backward.
    error: Option<anyhow::Error>,
    /// Buckets sent while backward was still running, last step.
    sent_during_backward: usize,
}

/// What the hooks reach through their user pointer (boxed: its address must not move).
struct Shared {
    /// Parameters in reverse registration order.
    params: Vec<Tensor>,
    buckets: Vec<Vec<usize>>,
    bucket_of: Vec<usize>,
    progress: RefCell<Progress>,
    summer: Box<dyn BackgroundSum>,
    codec: Rc<RefCell<Box<dyn Codec>>>,
}

pub struct Reducer {
    shared: Box<Shared>,
}

extern "C" fn gradient_ready(user: *mut c_void, index: i64) {
    let outcome = std::panic::catch_unwind(|| {
        // SAFETY: `user` is the boxed Shared of a live Reducer; hooks are cleared on drop.
        let shared = unsafe { &*(user as *const Shared) };
        shared.ready(index as usize);
    });
    if outcome.is_err() {
        eprintln!("error: the gradient-ready hook panicked");
        std::process::abort();
    }
}

impl Shared {
    fn ready(&self, index: usize) {
        let mut p = self.progress.borrow_mut();
        if !p.armed {
            return;
        }
        let b = self.bucket_of[index];
        p.missing[b] = p.missing[b].saturating_sub(1);
        while p.next < self.buckets.len() && p.missing[p.next] == 0 {
            let next = p.next;
            if let Err(e) = self.send(next) {
                p.error.get_or_insert(e);
            }
            p.next += 1;
        }
    }

    /// The bucket's gradients (zeros where there is none), at the time of sending.
    fn grads(&self, bucket: usize) -> Vec<Tensor> {
        self.buckets[bucket].iter().map(|&i| buckets::grad_or_zeros(&self.params[i])).collect()
    }

    fn send(&self, bucket: usize) -> anyhow::Result<()> {
        let flat = self.codec.borrow_mut().encode(bucket, &self.grads(bucket));
        self.summer.submit(flat, bucket)
    }
}

impl Reducer {
    /// Hooks on `params` (in registration order) and buckets of about `bucket_bytes`, sent
    /// as `codec` says.
    pub fn new(
        params: &[Tensor],
        bucket_bytes: usize,
        codec: Rc<RefCell<Box<dyn Codec>>>,
        summer: Box<dyn BackgroundSum>,
    ) -> anyhow::Result<Self> {
        let params: Vec<Tensor> = params.iter().rev().map(|p| p.shallow_clone()).collect();
        let buckets = buckets::plan(&params, bucket_bytes, &|k| codec.borrow().wire_size(k));
        let mut bucket_of = vec![0; params.len()];
        for (b, members) in buckets.iter().enumerate() {
            for &i in members {
                bucket_of[i] = b;
            }
        }
        let progress = RefCell::new(Progress::default());
        let shared = Box::new(Shared { params, buckets, bucket_of, progress, summer, codec });
        let user = &*shared as *const Shared as *mut c_void;
        for (i, p) in shared.params.iter().enumerate() {
            // SAFETY: a live tensor; the hook's user pointer outlives it (cleared on drop).
            let ok = unsafe { segzoo_set_grad_ready_hook(p.as_ptr() as *mut c_void, gradient_ready, user, i as i64) };
            anyhow::ensure!(ok, "could not set a gradient hook on parameter {i}");
        }
        Ok(Reducer { shared })
    }

    /// (buckets sent while the last backward ran, buckets): how much of the all-reduce
    /// backward could hide. Buckets go in order, so one holding a parameter that got no
    /// gradient (an unused head, registered last and so in the first bucket) holds back
    /// every later one until backward ends.
    pub fn overlapped(&self) -> (usize, usize) {
        (self.shared.progress.borrow().sent_during_backward, self.shared.buckets.len())
    }

    /// Count gradients from the next backward (the last micro-batch's).
    pub fn arm(&self) {
        let mut p = self.shared.progress.borrow_mut();
        p.missing = self.shared.buckets.iter().map(Vec::len).collect();
        (p.armed, p.next, p.error) = (true, 0, None);
    }

    /// After backward: send the open buckets, await every sum, and write the averaged
    /// gradients back (a parameter without a gradient stays without).
    pub fn finish(&self) -> anyhow::Result<()> {
        let shared = &*self.shared;
        let (next, error) = {
            let mut p = shared.progress.borrow_mut();
            p.armed = false;
            p.sent_during_backward = p.next;
            (p.next, p.error.take())
        };
        if let Some(e) = error {
            return Err(e);
        }
        for b in next..shared.buckets.len() {
            shared.send(b)?;
        }
        // First rounds in bucket order; a codec's second round (PowerSGD's Q) is sent as
        // soon as its first is in, and awaited after every first round (the order sent).
        let mut second = Vec::new();
        for bucket in 0..shared.buckets.len() {
            let sum = shared.summer.wait()?;
            // A missing gradient's zeros receive their share and are dropped: it stays missing.
            let mut grads = shared.grads(bucket);
            if let Some(next) = shared.codec.borrow_mut().first(bucket, sum, &mut grads) {
                shared.summer.submit(next, bucket)?;
                second.push((bucket, grads));
            }
        }
        for (bucket, mut grads) in second {
            let sum = shared.summer.wait()?;
            shared.codec.borrow_mut().second(bucket, sum, &mut grads);
        }
        Ok(())
    }
}

impl Drop for Reducer {
    fn drop(&mut self) {
        for p in &self.shared.params {
            // SAFETY: a live tensor.
            unsafe { segzoo_clear_grad_ready_hook(p.as_ptr() as *mut c_void) };
        }
    }
}
