//! NCCL through cudarc's dynamically loaded bindings: the GPU collective backend, on
//! the tch tensors' device memory. Nothing here needs CUDA at build time; on a machine
//! without the library every entry point returns an error instead of panicking.
use super::collective::{BackendKind, Collective};
use super::mpi::MpiCollective;
use super::watchdog;
use super::world::{Launch, World};
use anyhow::{bail, Context};
use cudarc::nccl::{result, sys};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NcclStatus {
    pub found: bool,
    /// `major.minor.patch` when the library loaded.
    pub version: Option<String>,
    /// Why it is unusable, when it is.
    pub detail: Option<String>,
}

/// Decode NCCL's integer version (major*10000 + minor*100 + patch since 2.9).
pub fn decode_version(code: i32) -> String {
    if code >= 10_000 {
        format!("{}.{}.{}", code / 10_000, code / 100 % 100, code % 100)
    } else {
        format!("{}.{}.{}", code / 1000, code / 100 % 10, code % 100)
    }
}

/// Whether libnccl.so can be loaded and which version it is. Never panics:
/// cudarc panics on a missing library, so presence is checked first.
pub fn probe() -> NcclStatus {
    // SAFETY: only attempts to dlopen the library candidates.
    if !unsafe { cudarc::nccl::sys::is_culib_present() } {
        return NcclStatus {
            found: false,
            version: None,
            detail: Some(
                "libnccl.so not found on the library path (.segzoo/lib, LD_LIBRARY_PATH); \
                 a GPU install (SEGZOO_TORCH=cuda scripts/setup.sh) provides it"
                    .into(),
            ),
        };
    }
    match cudarc::nccl::result::get_nccl_version() {
        Ok(code) => NcclStatus { found: true, version: Some(decode_version(code)), detail: None },
        Err(e) => NcclStatus { found: true, version: None, detail: Some(format!("ncclGetVersion failed: {e:?}")) },
    }
}

/// NCCL's name for a tensor kind.
pub fn data_type(kind: Kind) -> anyhow::Result<sys::ncclDataType_t> {
    use sys::ncclDataType_t::*;
    Ok(match kind {
        Kind::Float => ncclFloat32,
        Kind::Double => ncclFloat64,
        Kind::Half => ncclFloat16,
        Kind::BFloat16 => ncclBfloat16,
        Kind::Int64 => ncclInt64,
        Kind::Int => ncclInt32,
        Kind::Uint8 => ncclUint8,
        other => bail!("NCCL collectives do not support {other:?} tensors"),
    })
}

/// Make `index` the calling thread's CUDA device, as NCCL binds a communicator to the
/// current device (libtorch only switches devices around its own calls).
fn set_device(index: usize) -> anyhow::Result<()> {
    // SAFETY: only attempts to dlopen libcudart (libtorch's CUDA build has loaded it).
    if !unsafe { cudarc::runtime::sys::is_culib_present() } {
        bail!("libcudart not found: a CUDA build of torch (SEGZOO_TORCH=cuda scripts/setup.sh) provides it");
    }
    cudarc::runtime::result::device::set(index as i32).map_err(|e| anyhow::anyhow!("cudaSetDevice({index}): {e:?}"))
}

fn unique_id() -> anyhow::Result<sys::ncclUniqueId> {
    result::get_uniqueid().map_err(|e| anyhow::anyhow!("ncclGetUniqueId: {e:?}"))
}

/// Rank 0's unique id, broadcast over MPI (the mpirun bootstrap).
fn share_unique_id(mpi: &MpiCollective) -> anyhow::Result<sys::ncclUniqueId> {
    let mut id = sys::ncclUniqueId { internal: [0; 128] };
    if mpi.rank() == 0 {
        id = unique_id()?;
    }
    let bytes: Vec<u8> = id.internal.iter().map(|&c| c as u8).collect();
    let mut t = Tensor::from_slice(&bytes);
    mpi.broadcast(&mut t, 0).context("broadcasting NCCL's unique id over MPI")?;
    let shared = Vec::<u8>::try_from(&t)?;
    for (dst, src) in id.internal.iter_mut().zip(shared) {
        *dst = src as _;
    }
    Ok(id)
}

/// A NCCL communicator over every rank, one GPU each. Collectives are enqueued on the
/// default (null) CUDA stream, which is the stream libtorch computes on unless told
/// otherwise (segzoo never is): they are ordered after the kernels that produced the
/// gradients without a host synchronisation.
pub struct NcclCollective {
    comm: sys::ncclComm_t,
    rank: usize,
    size: usize,
    device: usize,
    /// Under mpirun: MPI carried the unique id and stays up so that MPI_Abort can end
    /// the job; dropped (finalised) after the communicator.
    mpi: Option<MpiCollective>,
}

impl NcclCollective {
    /// Bootstrap: under mpirun rank 0's `ncclGetUniqueId` goes to everyone over MPI;
    /// under segzoo-launch `NCCL_COMM_ID=<host>:<port>` makes every rank's id the same
    /// and rank 0 hosts NCCL's own rendezvous there; alone, the id is local.
    pub fn init(world: &World, device: Device) -> anyhow::Result<Self> {
        let status = probe();
        if !status.found || status.version.is_none() {
            bail!("NCCL is not usable: {}", status.detail.unwrap_or_default());
        }
        let Device::Cuda(index) = device else {
            bail!(
                "NCCL needs a CUDA device but rank {} runs on the CPU; for CPU training use MPI \
                 (mpirun -n N segzoo …, dist.backend = \"mpi\" or \"auto\")",
                world.rank
            );
        };
        set_device(index)?;
        let (id, mpi) = match world.launch {
            Launch::Mpi => {
                let mpi = MpiCollective::init(world)?;
                (share_unique_id(&mpi)?, Some(mpi))
            }
            Launch::Launcher if world.size > 1 && std::env::var_os("NCCL_COMM_ID").is_none() => bail!(
                "NCCL_COMM_ID is not set: segzoo-launch sets it to <first server>:<master port> so that the \
                 ranks find each other; start the workers with segzoo-launch or mpirun"
            ),
            Launch::Launcher | Launch::Single => (unique_id()?, None),
        };
        let mut comm: sys::ncclComm_t = std::ptr::null_mut();
        // SAFETY: `comm` is a valid out-pointer; the id is the job's shared id.
        unsafe { result::comm_init_rank(&mut comm, world.size as i32, id, world.rank as i32) }.map_err(|e| {
            anyhow::anyhow!("ncclCommInitRank (rank {} of {} on cuda:{index}): {e:?}", world.rank, world.size)
        })?;
        watch(comm, index, mpi.is_some());
        Ok(NcclCollective { comm, rank: world.rank, size: world.size, device: index, mpi })
    }

    /// `op(ptr, count, type)` on `t`'s memory (a contiguous copy when `t` is strided).
    fn on_device(
        &self,
        name: &str,
        t: &mut Tensor,
        op: impl FnOnce(*mut std::ffi::c_void, usize, sys::ncclDataType_t) -> Result<(), result::NcclError>,
    ) -> anyhow::Result<()> {
        if t.device() != Device::Cuda(self.device) {
            bail!("NCCL rank {} works on cuda:{} but the tensor is on {:?}", self.rank, self.device, t.device());
        }
        let dtype = data_type(t.kind())?;
        let dense = if t.is_contiguous() { t.shallow_clone() } else { t.contiguous() };
        let count = dense.numel();
        {
            // Blocking while NCCL connects to its peers (the first collectives), hence guarded.
            let _in_flight = watchdog::guard(&format!("NCCL {name} of {count} values"));
            op(dense.data_ptr(), count, dtype)
                .map_err(|e| anyhow::anyhow!("NCCL rank {}: {name}: {}", self.rank, describe(e.0, self.comm)))?;
        }
        track(&format!("NCCL {name} of {count} values"));
        if !t.is_contiguous() {
            tch::no_grad(|| t.copy_(&dense));
        }
        Ok(())
    }
}

/// A communicator handle the watchdog's thread may use: NCCL allows ncclCommAbort and
/// ncclCommGetAsyncError from another thread than the one running collectives.
#[derive(Clone, Copy)]
struct SharedComm(sys::ncclComm_t);
// SAFETY: see above; the watchdog forgets it (clear_backend) before it is destroyed.
unsafe impl Send for SharedComm {}
unsafe impl Sync for SharedComm {}

impl SharedComm {
    /// Through a method, so that closures capture the Send wrapper, not the raw field.
    fn get(self) -> sys::ncclComm_t {
        self.0
    }
}

/// NCCL's description of `code`, with its last error message for `comm`.
fn describe(code: sys::ncclResult_t, comm: sys::ncclComm_t) -> String {
    let text = |p: *const std::ffi::c_char| {
        // SAFETY: NCCL returns static or per-communicator NUL-terminated strings (or null).
        (!p.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned())
    };
    // SAFETY: plain queries.
    let name = text(unsafe { sys::ncclGetErrorString(code) }).unwrap_or_else(|| format!("{code:?}"));
    match text(unsafe { sys::ncclGetLastError(comm) }).filter(|l| !l.is_empty()) {
        Some(last) => format!("{name}: {last}"),
        None => name,
    }
}

/// Hand the watchdog what it needs for this communicator: how to abort it (and, under
/// mpirun, the MPI job) and how to poll its asynchronous errors.
fn watch(comm: sys::ncclComm_t, device: usize, under_mpi: bool) {
    let shared = SharedComm(comm);
    watchdog::set_abort(move |code| {
        // SAFETY: a live communicator (see SharedComm); aborting frees its kernels.
        let _ = unsafe { result::comm_abort(shared.get()) };
        if under_mpi {
            // SAFETY: MPI is initialised (it carried the unique id) and not finalised.
            unsafe { mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, code) };
        }
    });
    let mut device_set = false;
    watchdog::set_probe(move || {
        if !device_set {
            device_set = set_device(device).is_ok();
        }
        let mut state = sys::ncclResult_t::ncclSuccess;
        // SAFETY: a live communicator; `state` is a valid out-pointer.
        let polled = unsafe { sys::ncclCommGetAsyncError(shared.get(), &mut state) };
        match (polled, state) {
            (sys::ncclResult_t::ncclSuccess, sys::ncclResult_t::ncclSuccess | sys::ncclResult_t::ncclInProgress) => {
                None
            }
            (sys::ncclResult_t::ncclSuccess, failed) => Some(describe(failed, shared.get())),
            (failed, _) => Some(format!("ncclCommGetAsyncError: {}", describe(failed, shared.get()))),
        }
    });
}

/// A CUDA event recorded on the null stream after an enqueued collective, which the
/// watchdog polls: the collective counts as in flight until the GPU has passed it.
fn track(op: &str) {
    use cudarc::runtime::{result::event, sys as rt};
    let Ok(ev) = event::create(rt::cudaEventDisableTiming) else { return };
    // SAFETY: a fresh event; the null stream is libtorch's compute stream here.
    if unsafe { event::record(ev, std::ptr::null_mut()) }.is_err() {
        // SAFETY: created above, never recorded.
        let _ = unsafe { event::destroy(ev) };
        return;
    }
    struct Event(rt::cudaEvent_t);
    // SAFETY: CUDA events may be queried and destroyed from any thread.
    unsafe impl Send for Event {}
    impl Event {
        /// Whether the GPU has passed it; destroys it then (once).
        fn passed(&self) -> bool {
            // SAFETY: a live event until it has completed.
            let state = unsafe { rt::cudaEventQuery(self.0) };
            if state == rt::cudaError::cudaErrorNotReady {
                return false;
            }
            // SAFETY: completed, and never queried again (the watchdog drops done work).
            let _ = unsafe { event::destroy(self.0) };
            true
        }
    }
    let ev = Event(ev);
    watchdog::track(op, move || ev.passed());
}

impl Drop for NcclCollective {
    fn drop(&mut self) {
        watchdog::clear_backend();
        // SAFETY: the communicator was created by init and is destroyed once.
        let _ = unsafe { result::comm_destroy(self.comm) };
    }
}

impl Collective for NcclCollective {
    fn kind(&self) -> BackendKind {
        BackendKind::Nccl
    }
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_reduce_sum(&self, t: &mut Tensor) -> anyhow::Result<()> {
        let comm = self.comm;
        self.on_device("all-reduce", t, |ptr, count, dtype| {
            // SAFETY: `ptr` addresses `count` elements of `dtype` on this rank's device.
            unsafe { result::all_reduce(ptr, ptr, count, dtype, sys::ncclRedOp_t::ncclSum, comm, std::ptr::null_mut()) }
                .map(|_| ())
        })
    }
    fn broadcast(&self, t: &mut Tensor, root: usize) -> anyhow::Result<()> {
        anyhow::ensure!(root < self.size, "broadcast from rank {root} in a world of {}", self.size);
        let comm = self.comm;
        self.on_device("broadcast", t, |ptr, count, dtype| {
            // SAFETY: as above; in place, as NCCL allows.
            unsafe { result::broadcast(ptr, ptr, count, dtype, root as i32, comm, std::ptr::null_mut()) }.map(|_| ())
        })
    }
    fn barrier(&self) -> anyhow::Result<()> {
        // NCCL has no barrier: a one-element all-reduce, waited for on the host.
        let mut t = Tensor::ones([1], (Kind::Float, Device::Cuda(self.device)));
        self.all_reduce_sum(&mut t)?;
        let _ = t.double_value(&[0]);
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        if let Some(mpi) = &self.mpi {
            mpi.abort(code)
        }
        // SAFETY: the job ends here; pending operations are abandoned.
        let _ = unsafe { result::comm_abort(self.comm) };
        std::process::exit(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_versions() {
        assert_eq!(decode_version(22805), "2.28.5");
        assert_eq!(decode_version(2708), "2.7.8");
    }

    #[test]
    fn maps_kinds_and_refuses_the_rest() {
        assert_eq!(data_type(Kind::BFloat16).expect("bf16"), sys::ncclDataType_t::ncclBfloat16);
        assert_eq!(data_type(Kind::Int64).expect("i64"), sys::ncclDataType_t::ncclInt64);
        assert!(data_type(Kind::ComplexFloat).expect_err("complex").to_string().contains("ComplexFloat"));
    }

    #[test]
    fn refuses_a_cpu_device_or_a_missing_library_with_a_reason() {
        let world = World::single(None);
        let err = match NcclCollective::init(&world, Device::Cpu) {
            Ok(_) => panic!("NCCL on the CPU must fail"),
            Err(e) => e.to_string(),
        };
        if probe().version.is_some() {
            assert!(err.contains("needs a CUDA device"), "{err}");
        } else {
            assert!(err.contains("NCCL is not usable") && err.contains("libnccl"), "{err}");
        }
    }
}
