//! Distribution: where this process stands (world), the collective backends (NCCL,
//! MPI, single), gradient buckets, and the probes `segzoo env` reports.
pub mod backend;
pub mod buckets;
pub mod check;
pub mod collective;
pub mod mpi;
pub mod nccl;
pub mod world;

pub use collective::{BackendKind, Collective, Comm};

/// This process's world, device and collective group, from the environment: the
/// device is `device` when given, else `cuda:DEVICE_ID|LOCAL_RANK` where CUDA is, else
/// the CPU. CPU ranks sharing a machine split its cores between their torch pools.
pub fn join(
    device: Option<tch::Device>,
    backend: crate::config::Backend,
) -> anyhow::Result<(world::World, tch::Device, Comm)> {
    let w = world::from_process_env()?;
    let device = match device {
        Some(d) => d,
        None => w.device(if tch::Cuda::is_available() { tch::Cuda::device_count() } else { 0 })?,
    };
    if w.local_size > 1 && device == tch::Device::Cpu {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tch::set_num_threads((cores / w.local_size).max(1) as i32);
    }
    let comm = backend::connect(backend, &w, device)?;
    Ok((w, device, comm))
}
