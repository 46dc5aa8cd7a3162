//! MPI through rsmpi (OpenMPI from Debian): a CPU collective backend of its own, and the
//! channel the c10d rendezvous address travels over under mpirun.
use super::collective::{BackendKind, BackgroundSum, Collective};
use super::watchdog;
use super::world::World;
use anyhow::Context;
use mpi::collective::SystemOperation;
use mpi::datatype::Equivalence;
use mpi::environment::Threading;
use mpi::traits::{Communicator, CommunicatorCollectives, Root};
use serde::Serialize;
use tch::kind::Element;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MpiStatus {
    /// The implementation's own description, e.g. "Open MPI v4.1.4, …".
    pub library: String,
    /// MPI standard version the library implements.
    pub standard: String,
}

/// The linked MPI library; valid before MPI_Init, so this starts nothing.
pub fn probe() -> MpiStatus {
    let (major, minor) = mpi::environment::version();
    let library = mpi::environment::library_version()
        .map(|s| {
            // "Open MPI v4.1.4, package: …, repo rev: …\0": the name and version are enough.
            let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
            s.split(',').next().unwrap_or(s).trim().to_string()
        })
        .unwrap_or_else(|e| format!("unreadable version string: {e}"));
    MpiStatus { library, standard: format!("{major}.{minor}") }
}

/// Collectives over MPI_COMM_WORLD. Tensors travel through host memory (a GPU tensor is
/// copied to the CPU and back); f16/bf16 are summed in f32, which MPI has a type for.
pub struct MpiCollective {
    world: mpi::topology::SimpleCommunicator,
    // Dropped last: finalises MPI.
    _universe: mpi::environment::Universe,
    rank: usize,
    size: usize,
    /// MPI_THREAD_MULTIPLE was granted: a background thread may run collectives too.
    threads: bool,
}

/// Calls `$f::<T>(args…)` for the Rust type `T` of a host kind.
macro_rules! by_kind {
    ($f:ident, $kind:expr $(, $arg:expr)*) => {
        match $kind {
            Kind::Float => $f::<f32>($($arg),*),
            Kind::Double => $f::<f64>($($arg),*),
            Kind::Int64 => $f::<i64>($($arg),*),
            Kind::Int => $f::<i32>($($arg),*),
            _ => $f::<u8>($($arg),*),
        }
    };
}

/// MPI counts are C ints: larger buffers go in pieces.
const CHUNK: usize = 1 << 30;

fn host_kind(kind: Kind) -> anyhow::Result<Kind> {
    match kind {
        Kind::Float | Kind::Double | Kind::Int64 | Kind::Int | Kind::Uint8 => Ok(kind),
        Kind::Half | Kind::BFloat16 => Ok(Kind::Float),
        other => anyhow::bail!("MPI collectives do not support {other:?} tensors"),
    }
}

impl MpiCollective {
    /// Initialise MPI (once per process) and check it agrees with the world read from
    /// the environment.
    pub fn init(expected: &World) -> anyhow::Result<Self> {
        // Multiple: gradient buckets are all-reduced on a thread of their own during backward.
        let (universe, provided) = mpi::initialize_with_threading(Threading::Multiple)
            .context("MPI is already initialised in this process")?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        if (rank, size) != (expected.rank, expected.size) {
            anyhow::bail!(
                "MPI_COMM_WORLD has this process as rank {rank} of {size} but the environment says rank {} of {}",
                expected.rank,
                expected.size
            );
        }
        // A timed-out collective ends the whole mpirun job from the watchdog's thread.
        // SAFETY: MPI is initialised; MPI_Abort may be called from any thread.
        watchdog::set_abort(|code| unsafe {
            mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, code);
        });
        Ok(MpiCollective { world, _universe: universe, rank, size, threads: provided == Threading::Multiple })
    }
}

impl Drop for MpiCollective {
    fn drop(&mut self) {
        // MPI_Abort is invalid after MPI_Finalize, which follows.
        watchdog::clear_backend();
    }
}

/// What the watchdog calls a collective on `n` values.
fn op(name: &str, n: usize) -> String {
    format!("MPI {name} of {n} values")
}

fn bcast_on<T: Element + Equivalence + Default + Clone>(
    comm: &mpi::topology::SimpleCommunicator,
    host: &Tensor,
    root: usize,
) -> anyhow::Result<Tensor> {
    let mut buf = to_vec::<T>(host)?;
    let root = comm.process_at_rank(root as i32);
    for piece in buf.chunks_mut(CHUNK) {
        root.broadcast_into(piece);
    }
    Ok(Tensor::from_slice(&buf))
}

fn gather_on<T: Element + Equivalence + Default + Clone>(
    comm: &mpi::topology::SimpleCommunicator,
    host: &Tensor,
) -> anyhow::Result<Tensor> {
    let send = to_vec::<T>(host)?;
    anyhow::ensure!(
        send.len().saturating_mul(comm.size() as usize) <= i32::MAX as usize,
        "MPI all-gather of {} values from {} ranks is beyond MPI's counts",
        send.len(),
        comm.size()
    );
    let mut recv = vec![T::default(); send.len() * comm.size() as usize];
    comm.all_gather_into(&send[..], &mut recv[..]);
    Ok(Tensor::from_slice(&recv))
}

fn reduce_on<T: Element + Equivalence + Default + Clone>(
    comm: &mpi::topology::SimpleCommunicator,
    host: &Tensor,
) -> anyhow::Result<Tensor> {
    let send = to_vec::<T>(host)?;
    let mut recv = vec![T::default(); send.len()];
    for (s, r) in send.chunks(CHUNK).zip(recv.chunks_mut(CHUNK)) {
        comm.all_reduce_into(s, r, SystemOperation::sum());
    }
    Ok(Tensor::from_slice(&recv))
}

/// A duplicate of MPI_COMM_WORLD owned by a thread that sums what it is sent, in order.
struct MpiBackground {
    jobs: Option<std::sync::mpsc::Sender<(Tensor, usize)>>,
    results: std::sync::mpsc::Receiver<anyhow::Result<Tensor>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A communicator handle moved to the background thread, which alone uses it from then on.
struct RawComm(mpi::ffi::MPI_Comm);
// SAFETY: MPI_THREAD_MULTIPLE was granted, and the handle is used by one thread only.
unsafe impl Send for RawComm {}

impl MpiBackground {
    fn start(world: &mpi::topology::SimpleCommunicator) -> Self {
        use mpi::raw::{AsRaw, FromRaw};
        let dup = world.duplicate();
        let raw = RawComm(dup.as_raw());
        // The thread owns (and frees) the duplicate.
        std::mem::forget(dup);
        let (jobs, inbox) = std::sync::mpsc::channel::<(Tensor, usize)>();
        let (outbox, results) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let raw = raw;
            // SAFETY: a live intra-communicator that no other thread uses.
            let comm = unsafe { mpi::topology::SimpleCommunicator::from_raw(raw.0) };
            for (flat, bucket) in inbox {
                let what = "gradient all-reduce, overlapped with backward";
                let _in_flight = watchdog::within(what, || watchdog::guard(&op("all-reduce", flat.numel())));
                let start = std::time::Instant::now();
                // MPI has no half types: f16/bf16 buckets (compressed gradients) are summed in
                // f32 on the host, as every MPI collective here, and returned in their kind.
                let sum = host_kind(flat.kind()).and_then(|kind| {
                    let host = flat.to_device(tch::Device::Cpu).to_kind(kind).contiguous();
                    let sum = by_kind!(reduce_on, kind, &comm, &host)?;
                    Ok(sum.to_kind(flat.kind()).to_device(flat.device()))
                });
                if crate::timeline::active() {
                    let name = crate::distributed::buckets::bucket_span(bucket, &flat);
                    crate::timeline::record(&name, crate::timeline::COMM_LANE, start);
                }
                if outbox.send(sum).is_err() {
                    break;
                }
            }
        });
        MpiBackground { jobs: Some(jobs), results, thread: Some(thread) }
    }
}

impl BackgroundSum for MpiBackground {
    fn submit(&self, flat: Tensor, bucket: usize) -> anyhow::Result<()> {
        let jobs = self.jobs.as_ref().context("the MPI background thread is stopped")?;
        jobs.send((flat, bucket)).map_err(|_| anyhow::anyhow!("the MPI background thread has stopped"))
    }

    fn wait(&self) -> anyhow::Result<Tensor> {
        self.results.recv().map_err(|_| anyhow::anyhow!("the MPI background thread has stopped"))?
    }
}

impl Drop for MpiBackground {
    /// The thread frees its communicator as it ends, which must be before MPI_Finalize.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn to_vec<T: Element + Default + Clone>(host: &Tensor) -> anyhow::Result<Vec<T>> {
    let mut v = vec![T::default(); host.numel()];
    host.f_copy_data(&mut v, host.numel())?;
    Ok(v)
}

/// `f` on a contiguous host copy of `t` in a kind MPI knows; the result replaces `t`.
fn through_host(t: &mut Tensor, f: impl FnOnce(Kind, &Tensor) -> anyhow::Result<Tensor>) -> anyhow::Result<()> {
    let kind = host_kind(t.kind())?;
    let host = t.to_device(tch::Device::Cpu).to_kind(kind).contiguous();
    let out = f(kind, &host)?.view(t.size().as_slice());
    tch::no_grad(|| t.copy_(&out));
    Ok(())
}

impl Collective for MpiCollective {
    fn kind(&self) -> BackendKind {
        BackendKind::Mpi
    }
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_reduce_sum(&self, t: &mut Tensor) -> anyhow::Result<()> {
        let _in_flight = watchdog::guard(&op("all-reduce", t.numel()));
        through_host(t, |kind, host| by_kind!(reduce_on, kind, &self.world, host))
    }
    fn broadcast(&self, t: &mut Tensor, root: usize) -> anyhow::Result<()> {
        anyhow::ensure!(root < self.size, "broadcast from rank {root} in a world of {}", self.size);
        let _in_flight = watchdog::guard(&op("broadcast", t.numel()));
        through_host(t, |kind, host| by_kind!(bcast_on, kind, &self.world, host, root))
    }
    fn all_gather(&self, t: &Tensor) -> anyhow::Result<Tensor> {
        let _in_flight = watchdog::guard(&op("all-gather", t.numel()));
        let kind = host_kind(t.kind())?;
        let host = t.to_device(tch::Device::Cpu).to_kind(kind).contiguous();
        let mut shape = vec![self.size as i64];
        shape.extend(t.size());
        let out = by_kind!(gather_on, kind, &self.world, &host)?;
        Ok(out.view(shape.as_slice()).to_kind(t.kind()).to_device(t.device()))
    }
    fn barrier(&self) -> anyhow::Result<()> {
        let _in_flight = watchdog::guard("MPI barrier");
        self.world.barrier();
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
    fn background(&self) -> anyhow::Result<Option<Box<dyn BackgroundSum>>> {
        Ok(self.threads.then(|| Box::new(MpiBackground::start(&self.world)) as Box<dyn BackgroundSum>))
    }
}
