//! Choosing and starting the collective backend of this process: NCCL on GPUs, MPI on
//! CPU, nothing when alone; `dist.backend` overrides the choice.
use super::collective::{single, Comm};
use super::mpi::MpiCollective;
use super::nccl::NcclCollective;
use super::world::{Launch, World};
use crate::config::Backend;
use anyhow::bail;
use std::rc::Rc;
use tch::Device;

/// The backend `dist.backend = backend` means for this world and device.
pub fn resolve(backend: Backend, world: &World, device: Device) -> Backend {
    match backend {
        Backend::Auto if world.size == 1 => Backend::Single,
        Backend::Auto if device.is_cuda() => Backend::Nccl,
        Backend::Auto => Backend::Mpi,
        chosen => chosen,
    }
}

/// Join the job's collective group (blocks until every rank has joined).
pub fn connect(backend: Backend, world: &World, device: Device) -> anyhow::Result<Comm> {
    let (rank, size) = (world.rank, world.size);
    match resolve(backend, world, device) {
        Backend::Single | Backend::Auto => {
            if size > 1 {
                bail!("dist.backend = \"single\" but rank {rank} is one of {size} ranks; use \"auto\", \"mpi\" or \"nccl\"");
            }
            Ok(single())
        }
        Backend::Mpi => {
            if world.launch == Launch::Launcher && size > 1 {
                bail!(
                    "rank {rank} of {size} was started by segzoo-launch on {} and has no MPI world to join: \
                     train on CPU with `mpirun -n {size} segzoo train …` (the launcher's workers use NCCL on GPUs)",
                    if device.is_cuda() { "a GPU with dist.backend = \"mpi\"" } else { "the CPU" }
                );
            }
            Ok(Rc::new(MpiCollective::init(world)?))
        }
        Backend::Nccl => Ok(Rc::new(NcclCollective::init(world, device)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_by_world_and_device() {
        let alone = World::single(None);
        let mut two = World::single(None);
        two.size = 2;
        assert_eq!(resolve(Backend::Auto, &alone, Device::Cuda(0)), Backend::Single);
        assert_eq!(resolve(Backend::Auto, &two, Device::Cuda(0)), Backend::Nccl);
        assert_eq!(resolve(Backend::Auto, &two, Device::Cpu), Backend::Mpi);
        assert_eq!(resolve(Backend::Mpi, &alone, Device::Cpu), Backend::Mpi);
    }

    #[test]
    fn impossible_choices_are_refused_with_the_way_out() {
        let mut w = World::single(None);
        w.size = 2;
        let e = connect(Backend::Single, &w, Device::Cpu).map(|_| ()).expect_err("single of 2").to_string();
        assert!(e.contains("rank 0 is one of 2"), "{e}");
        w.launch = Launch::Launcher;
        let e = connect(Backend::Auto, &w, Device::Cpu).map(|_| ()).expect_err("launcher on CPU").to_string();
        assert!(e.contains("mpirun -n 2 segzoo train"), "{e}");
    }
}
