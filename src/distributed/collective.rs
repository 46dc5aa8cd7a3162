//! The collective operations data-parallel training needs, behind one small trait with
//! these backends: c10d's gloo (CPU) and NCCL (GPUs) in `process_group.rs`, MPI
//! (`mpi.rs`), and a no-op for a process alone.
use std::rc::Rc;
use tch::Tensor;

/// Which backend a [`Collective`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Single,
    Mpi,
    Gloo,
    Nccl,
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendKind::Single => "single",
            BackendKind::Mpi => "mpi",
            BackendKind::Gloo => "gloo",
            BackendKind::Nccl => "nccl",
        })
    }
}

/// Sums flat tensors over the ranks in submission order while the caller goes on (gradient
/// buckets during backward): MPI on a thread and communicator of its own, c10d as
/// asynchronous work. It may run alongside the caller's collectives.
pub trait BackgroundSum {
    /// Start summing `flat` (a host tensor, the step's bucket number `bucket`) over the ranks.
    fn submit(&self, flat: Tensor, bucket: usize) -> anyhow::Result<()>;
    /// The next submitted tensor's sum, waiting for it.
    fn wait(&self) -> anyhow::Result<Tensor>;
}

/// In-place collectives over every rank of the job. Tensors must have the same shape,
/// kind and device on every rank; supported kinds are f32, f64, bf16, f16, i64, i32, u8.
/// Called from the training loop's thread (SyncBatchNorm's backward: see group_sum.rs).
pub trait Collective {
    fn kind(&self) -> BackendKind;
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// `t` ← the sum of `t` over all ranks.
    fn all_reduce_sum(&self, t: &mut Tensor) -> anyhow::Result<()>;
    /// `t` ← rank `root`'s `t`.
    fn broadcast(&self, t: &mut Tensor, root: usize) -> anyhow::Result<()>;
    /// Every rank's `t`, stacked in rank order: `[size, ..t's shape]`.
    fn all_gather(&self, t: &Tensor) -> anyhow::Result<Tensor>;
    /// Returns once every rank has called it.
    fn barrier(&self) -> anyhow::Result<()>;
    /// End the whole job: under MPI every rank is killed (MPI_Abort), otherwise this
    /// process exits and its launcher stops the others.
    fn abort(&self, code: i32) -> !;
    /// A background summer, where the backend has one (MPI with thread support, c10d);
    /// `None` otherwise. Every rank calls it at the same point: it may connect a new group.
    fn background(&self) -> anyhow::Result<Option<Box<dyn BackgroundSum>>> {
        Ok(None)
    }
}

impl std::fmt::Debug for dyn Collective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} rank {}/{}", self.kind(), self.rank(), self.size())
    }
}

/// A shared handle on the job's collective backend.
pub type Comm = Rc<dyn Collective>;

/// A process alone: every collective is the identity.
#[derive(Debug, Default)]
pub struct Single;

impl Collective for Single {
    fn kind(&self) -> BackendKind {
        BackendKind::Single
    }
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _t: &mut Tensor) -> anyhow::Result<()> {
        Ok(())
    }
    fn broadcast(&self, _t: &mut Tensor, root: usize) -> anyhow::Result<()> {
        anyhow::ensure!(root == 0, "broadcast from rank {root} in a world of one");
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

/// The handle of a process alone.
pub fn single() -> Comm {
    Rc::new(Single)
}
