//! Distribution: where this process stands (`world.rs`), which device it uses
//! (`device.rs`), the collective backends (`collective.rs`: the trait and `single`;
//! `nccl.rs`, `mpi.rs`; chosen in `backend.rs`), gradient buckets (`buckets.rs`), and
//! the collective self-test `segzoo dist-check` runs (`check.rs`).
pub mod backend;
pub mod buckets;
pub mod check;
pub mod collective;
pub mod device;
pub mod group_sum;
pub mod mpi;
pub mod nccl;
pub mod overlap;
pub mod world;

pub use collective::{BackendKind, Collective, Comm};

/// This process's world, device (the policy of `device.rs`) and collective group, from
/// the environment. CPU ranks sharing a machine split its cores between their torch pools.
pub fn join(
    device: Option<tch::Device>,
    backend: crate::config::Backend,
) -> anyhow::Result<(world::World, tch::Device, Comm)> {
    let w = world::from_process_env()?;
    let device = device::select(&w, device)?;
    if w.local_size > 1 && device == tch::Device::Cpu {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tch::set_num_threads((cores / w.local_size).max(1) as i32);
    }
    let comm = backend::connect(backend, &w, device)?;
    Ok((w, device, comm))
}
