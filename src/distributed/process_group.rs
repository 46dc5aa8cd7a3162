//! The [`Collective`] backend over a c10d process group: gloo for CPU ranks (and GPU ranks
//! that ask for it, through host memory), NCCL for GPU ranks (CUDA build), as PyTorch DDP
//! runs. Each collective is issued asynchronously and its
//! work waited for: a blocking wait for gloo (under the watchdog's guard), an ordering of the
//! current CUDA stream for NCCL (the watchdog polls the work until the GPU has passed it).
//! Gradient buckets overlapped with backward ([`AsyncSum`]) are issued as backward produces
//! them and waited for after it, as DDP's reducer does; for gloo on a second group of their
//! own (so that SyncBatchNorm's collectives do not queue behind them), for NCCL on the same
//! communicator (one NCCL stream: no two communicators racing for the GPU).
use super::c10d::{GlooBind, Group, Progress, Store, Work};
use super::collective::{BackendKind, BackgroundSum, Collective};
use super::mpi::MpiCollective;
use super::watchdog;
use anyhow::bail;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

/// Worker threads of a gloo group. PyTorch's default is 2; one runs a group's collectives in
/// order, which is all segzoo issues, and measured faster where cores are few (a 40-byte
/// all-reduce between two ranks on 2 cores: 0.46 ms with one thread, 1.4 ms with two).
const GLOO_THREADS: usize = 1;

/// What c10d's own limit on a collective adds to `dist.timeout_s`: the watchdog, which
/// names the collective and the silent ranks, must fire first; c10d's limit is the backstop.
pub fn c10d_limit(timeout: Duration) -> Duration {
    timeout + (timeout / 10).max(Duration::from_secs(10))
}

pub struct ProcessGroup {
    group: Arc<Group>,
    /// Rank 0 hosts the rendezvous in this process: kept until the group is gone.
    store: Store,
    kind: BackendKind,
    rank: usize,
    size: usize,
    device: Device,
    timeout: Duration,
    bind: GlooBind,
    /// Background groups made so far (each on a store prefix of its own).
    backgrounds: Cell<usize>,
    /// Under mpirun: MPI carried the rendezvous address and stays up so that MPI_Abort can
    /// end the whole job; finalised after the group.
    mpi: Option<MpiCollective>,
}

/// How a new group is made.
pub struct Setup {
    pub store: Store,
    pub rank: usize,
    pub size: usize,
    pub device: Device,
    /// `dist.timeout_s`.
    pub timeout: Duration,
    /// The time left of `dist.init_timeout_s` for connecting.
    pub connect_timeout: Duration,
    pub bind: GlooBind,
    pub mpi: Option<MpiCollective>,
}

impl ProcessGroup {
    pub fn gloo(s: Setup) -> anyhow::Result<Self> {
        let group = Group::gloo(&s.store.prefixed("gloo/")?, s.rank, s.size, &s.bind, s.connect_timeout, GLOO_THREADS)
            .map_err(|e| anyhow::anyhow!("gloo: rank {} of {} could not connect to the others: {e}", s.rank, s.size))?;
        group.set_timeout(c10d_limit(s.timeout))?;
        Ok(Self::new(group, BackendKind::Gloo, s))
    }

    #[cfg(segzoo_cuda)]
    pub fn nccl(s: Setup) -> anyhow::Result<Self> {
        let Device::Cuda(index) = s.device else { bail!("NCCL needs a CUDA device") };
        let group = Group::nccl(&s.store.prefixed("nccl/")?, s.rank, s.size, index, c10d_limit(s.timeout))?;
        Ok(Self::new(group, BackendKind::Nccl, s))
    }

    fn new(group: Group, kind: BackendKind, s: Setup) -> Self {
        let group = Arc::new(group);
        let aborted = group.clone();
        let under_mpi = s.mpi.is_some();
        watchdog::set_abort(move |code| {
            aborted.abort();
            if under_mpi {
                // SAFETY: MPI is initialised (it carried the address) and not finalised.
                unsafe { mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, code) };
            }
            // Nothing else ends this process; its launcher stops the others. No exit
            // handlers: they could block on the group that is stuck.
            // SAFETY: ends the process at once.
            unsafe { libc::_exit(code) }
        });
        ProcessGroup {
            group,
            store: s.store,
            kind,
            rank: s.rank,
            size: s.size,
            device: s.device,
            timeout: s.timeout,
            bind: s.bind,
            backgrounds: Cell::new(0),
            mpi: s.mpi,
        }
    }

    fn check_kind(&self, kind: Kind) -> anyhow::Result<()> {
        match kind {
            Kind::Float | Kind::Double | Kind::BFloat16 | Kind::Half | Kind::Int64 | Kind::Int | Kind::Uint8 => Ok(()),
            other => bail!("{} collectives do not support {other:?} tensors", self.kind),
        }
    }

    /// `t` as the group takes it: contiguous, on the CPU for gloo (a GPU tensor goes
    /// through host memory), on this rank's GPU for NCCL.
    fn staged(&self, t: &Tensor) -> anyhow::Result<Tensor> {
        self.check_kind(t.kind())?;
        match self.kind {
            BackendKind::Nccl if t.device() != self.device => {
                bail!("NCCL rank {} works on {:?} but the tensor is on {:?}", self.rank, self.device, t.device())
            }
            BackendKind::Nccl => Ok(if t.is_contiguous() { t.shallow_clone() } else { t.contiguous() }),
            _ if t.device() != Device::Cpu || !t.is_contiguous() => Ok(t.to_device(Device::Cpu).contiguous()),
            _ => Ok(t.shallow_clone()),
        }
    }

    /// Wait for an issued collective (gloo: under the watchdog's guard; NCCL: the stream
    /// waits, the watchdog polls the work), naming it in failures.
    fn complete(&self, name: &str, numel: usize, work: anyhow::Result<Work>) -> anyhow::Result<()> {
        let label = format!("{} {name} of {numel} values", self.kind);
        let work = work.map_err(|e| anyhow::anyhow!("rank {}: {label}: {e}", self.rank))?;
        match self.kind {
            BackendKind::Nccl => {
                work.wait().map_err(|e| anyhow::anyhow!("rank {}: {label}: {e}", self.rank))?;
                track(&label, Arc::new(work), true);
            }
            _ => {
                let _in_flight = watchdog::guard(&label);
                work.wait().map_err(|e| anyhow::anyhow!("rank {}: {label}: {e}", self.rank))?;
            }
        }
        Ok(())
    }

    /// Run an in-place collective on `t`.
    fn in_place(
        &self,
        name: &str,
        t: &mut Tensor,
        op: impl FnOnce(&Group, &Tensor) -> anyhow::Result<Work>,
    ) -> anyhow::Result<()> {
        let staged = self.staged(t)?;
        self.complete(name, staged.numel(), op(&self.group, &staged))?;
        if staged.data_ptr() != t.data_ptr() {
            tch::no_grad(|| t.copy_(&staged));
        }
        Ok(())
    }
}

/// Hand the watchdog an issued work: in flight until it completes; with `fatal`, a failure
/// seen there ends the rank (NCCL's asynchronous errors, which no host call returns).
fn track(label: &str, work: Arc<Work>, fatal: bool) {
    watchdog::track(label, move || match work.poll() {
        Progress::Running => watchdog::Poll::Running,
        Progress::Done => watchdog::Poll::Done,
        Progress::Failed(e) if fatal => watchdog::Poll::Failed(e),
        Progress::Failed(_) => watchdog::Poll::Done,
    });
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // The watchdog's abort holds the group: forget it before the group goes.
        watchdog::clear_backend();
    }
}

impl Collective for ProcessGroup {
    fn kind(&self) -> BackendKind {
        self.kind
    }
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_reduce_sum(&self, t: &mut Tensor) -> anyhow::Result<()> {
        self.in_place("all-reduce", t, |g, s| g.all_reduce(s))
    }
    fn broadcast(&self, t: &mut Tensor, root: usize) -> anyhow::Result<()> {
        anyhow::ensure!(root < self.size, "broadcast from rank {root} in a world of {}", self.size);
        self.in_place("broadcast", t, |g, s| g.broadcast(s, root))
    }
    fn all_gather(&self, t: &Tensor) -> anyhow::Result<Tensor> {
        let staged = self.staged(t)?;
        let out = Tensor::zeros([self.size as i64 * staged.numel() as i64], (staged.kind(), staged.device()));
        self.complete("all-gather", staged.numel(), self.group.all_gather(&out, &staged))?;
        let mut shape = vec![self.size as i64];
        shape.extend(t.size());
        Ok(out.view(shape.as_slice()).to_device(t.device()))
    }
    fn barrier(&self) -> anyhow::Result<()> {
        if self.kind == BackendKind::Nccl {
            // A one-element all-reduce read back on the host: NCCL has no barrier of its own.
            let mut t = Tensor::ones([1], (Kind::Float, self.device));
            self.all_reduce_sum(&mut t)?;
            let _ = t.double_value(&[0]);
            return Ok(());
        }
        self.complete("barrier", 0, self.group.barrier())
    }
    fn abort(&self, code: i32) -> ! {
        if let Some(mpi) = &self.mpi {
            mpi.abort(code)
        }
        self.group.abort();
        std::process::exit(code)
    }
    fn background(&self) -> anyhow::Result<Option<Box<dyn BackgroundSum>>> {
        let group = match self.kind {
            BackendKind::Nccl => self.group.clone(),
            _ => {
                let n = self.backgrounds.get();
                self.backgrounds.set(n + 1);
                let store = self.store.prefixed(&format!("gloo-buckets-{n}/"))?;
                let group =
                    Group::gloo(&store, self.rank, self.size, &self.bind, c10d_limit(self.timeout), GLOO_THREADS)
                        .map_err(|e| anyhow::anyhow!("gloo: the gradient buckets' group of rank {}: {e}", self.rank))?;
                Arc::new(group)
            }
        };
        Ok(Some(Box::new(AsyncSum { group, kind: self.kind, rank: self.rank, queue: RefCell::new(VecDeque::new()) })))
    }
}

/// Buckets issued during backward, awaited in the same order after it.
struct AsyncSum {
    group: Arc<Group>,
    kind: BackendKind,
    rank: usize,
    queue: RefCell<VecDeque<InFlight>>,
}

/// A bucket's all-reduce in flight.
struct InFlight {
    work: Arc<Work>,
    flat: Tensor,
    bucket: usize,
    issued: Instant,
}

impl BackgroundSum for AsyncSum {
    fn submit(&self, flat: Tensor, bucket: usize) -> anyhow::Result<()> {
        let label = format!(
            "gradient all-reduce, overlapped with backward ({} all-reduce of {} values)",
            self.kind,
            flat.numel()
        );
        // gloo takes host tensors: a GPU bucket goes through host memory (the copy waits for
        // backward's work that made it, on the thread backward runs on).
        let flat = match self.kind {
            BackendKind::Nccl => flat,
            _ if flat.device() != Device::Cpu => flat.to_device(Device::Cpu),
            _ => flat,
        };
        let flat = if flat.is_contiguous() { flat } else { flat.contiguous() };
        let work =
            Arc::new(self.group.all_reduce(&flat).map_err(|e| anyhow::anyhow!("rank {}: {label}: {e}", self.rank))?);
        track(&label, work.clone(), self.kind == BackendKind::Nccl);
        self.queue.borrow_mut().push_back(InFlight { work, flat, bucket, issued: Instant::now() });
        Ok(())
    }

    fn wait(&self) -> anyhow::Result<Tensor> {
        let Some(InFlight { work, flat, bucket, issued }) = self.queue.borrow_mut().pop_front() else {
            bail!("no gradient bucket is in flight")
        };
        work.wait().map_err(|e| anyhow::anyhow!("rank {}: gradient all-reduce of bucket {bucket}: {e}", self.rank))?;
        if crate::timeline::active() {
            // From issue to the end of the wait: the bucket's time on the wire, or longer.
            crate::timeline::record(&super::buckets::bucket_span(bucket, &flat), crate::timeline::COMM_LANE, issued);
        }
        Ok(flat)
    }
}
