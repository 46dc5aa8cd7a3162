//! Choosing and starting the collective backend of this process: c10d's NCCL on GPUs,
//! c10d's gloo on CPU (MPI or gloo under mpirun, see [`MPIRUN_CPU`]), nothing when alone;
//! `dist.backend` overrides the choice. c10d backends meet at the rendezvous first.
use super::c10d::Store;
use super::collective::{single, Comm};
use super::mpi::MpiCollective;
use super::process_group::{c10d_limit, ProcessGroup, Setup};
use super::rendezvous::{self, Master};
use super::world::{Launch, World};
use crate::config::Backend;
use anyhow::bail;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

/// The CPU backend `auto` picks under mpirun. Measured on this project's 2-core machine
/// (docs/distributed.md): step times tie with gloo, MPI's latency is far lower for small
/// all-reduces and gloo's bandwidth higher for large ones; MPI was no slower.
pub const MPIRUN_CPU: Backend = Backend::Mpi;

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The least time a group has to connect once every rank has reached the rendezvous.
pub const CONNECT: Duration = Duration::from_secs(30);

/// The backend `dist.backend = backend` means for this world and device.
pub fn resolve(backend: Backend, world: &World, device: Device) -> Backend {
    match backend {
        Backend::Auto if world.size == 1 => Backend::Single,
        Backend::Auto if device.is_cuda() => Backend::Nccl,
        Backend::Auto if world.launch == Launch::Mpi => MPIRUN_CPU,
        Backend::Auto => Backend::Gloo,
        chosen => chosen,
    }
}

/// Whether this build has NCCL (the CUDA flavour of scripts/setup.sh).
pub const HAS_NCCL: bool = cfg!(segzoo_cuda);

/// Join the job's collective group (blocks until every rank has joined, or `deadline`).
pub fn connect(
    backend: Backend,
    world: &World,
    device: Device,
    timeout: Duration,
    deadline: Instant,
) -> anyhow::Result<Comm> {
    let (rank, size) = (world.rank, world.size);
    let env = |k: &str| std::env::var(k).ok();
    match resolve(backend, world, device) {
        Backend::Single | Backend::Auto => {
            if size > 1 {
                bail!("dist.backend = \"single\" but rank {rank} is one of {size} ranks; use \"auto\", \"gloo\" or \"nccl\"");
            }
            Ok(single())
        }
        Backend::Mpi => {
            if world.launch != Launch::Mpi && size > 1 {
                bail!(
                    "dist.backend = \"mpi\" but rank {rank} of {size} was started by {}, not mpirun: there is no MPI \
                     world to join; use dist.backend = \"gloo\" (or \"auto\") on CPU, \"nccl\" on GPUs",
                    world.launch.name()
                );
            }
            Ok(Rc::new(MpiCollective::init(world)?))
        }
        Backend::Gloo => {
            let setup = meet(world, device, &env, timeout, deadline)?;
            Ok(Rc::new(ProcessGroup::gloo(setup)?))
        }
        Backend::Nccl => {
            if !HAS_NCCL {
                bail!(
                    "dist.backend = \"nccl\" needs the CUDA build of segzoo (SEGZOO_TORCH=cuda scripts/setup.sh && \
                     cargo build --release); this is the CPU build: use \"gloo\" or \"auto\""
                );
            }
            if !device.is_cuda() {
                bail!(
                    "NCCL needs a CUDA device but rank {rank} runs on the CPU ({}); use dist.backend = \"gloo\" or \
                     \"auto\" for CPU ranks",
                    if tch::Cuda::is_available() { "--device cpu" } else { "no GPU is visible" }
                );
            }
            nccl(meet(world, device, &env, timeout, deadline)?)
        }
    }
}

#[cfg(segzoo_cuda)]
fn nccl(setup: Setup) -> anyhow::Result<Comm> {
    Ok(Rc::new(ProcessGroup::nccl(setup)?))
}

#[cfg(not(segzoo_cuda))]
fn nccl(_: Setup) -> anyhow::Result<Comm> {
    bail!("NCCL is not in this build")
}

/// The rendezvous generation: torchrun's and segzoo-launch's restart counts, so that a
/// restarted job's keys never meet the last attempt's (torchrun's store outlives workers).
fn generation(env: Env) -> String {
    env("TORCHELASTIC_RESTART_COUNT").or_else(|| env("SEGZOO_LAUNCH_RESTART")).unwrap_or_else(|| "0".into())
}

/// Meet the other ranks at the rendezvous and say how to make the group.
fn meet(world: &World, device: Device, env: Env, timeout: Duration, deadline: Instant) -> anyhow::Result<Setup> {
    let left = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let mpi = if world.launch == Launch::Mpi { Some(MpiCollective::init(world)?) } else { None };
    let (store, master) = match (rendezvous::master_from_env(world, env)?, &mpi) {
        (Some(master), _) => {
            // torchrun's agent hosts the store itself and tells its workers so.
            let agent_hosts = env("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v == "True");
            let store = if world.rank == 0 && !agent_hosts {
                rendezvous::host(master.port, &master.from, left())?.0
            } else {
                rendezvous::connect(world.rank, &master, left())?
            };
            (store, master)
        }
        (None, Some(mpi)) => over_mpi(world, mpi, env, left())?,
        (None, None) => {
            bail!("rank {} of {} has no rendezvous address (MASTER_ADDR, MASTER_PORT)", world.rank, world.size)
        }
    };
    let store = store.prefixed(&format!("segzoo/gen{}/", generation(env)))?;
    rendezvous::await_members(&store, world, &master, deadline)?;
    // From here on the store serves the group, with the collectives' limit rather than what
    // was left of the start's: NCCL reads its unique id from it at the first collective,
    // which may come long after the rendezvous (init_process_group does the same).
    store.set_timeout(c10d_limit(timeout))?;
    let bind = rendezvous::gloo_bind(env, &master);
    let connect_timeout = left().max(CONNECT);
    Ok(Setup { store, rank: world.rank, size: world.size, device, timeout, connect_timeout, bind, mpi })
}

/// Under mpirun without MASTER_ADDR/MASTER_PORT: rank 0 hosts the store on a free port
/// (or `MASTER_PORT`) and sends its address to the others over MPI.
fn over_mpi(world: &World, mpi: &MpiCollective, env: Env, timeout: Duration) -> anyhow::Result<(Store, Master)> {
    use super::collective::Collective;
    const LEN: i64 = 256;
    let addr = env("MASTER_ADDR").filter(|a| !a.trim().is_empty()).unwrap_or_else(|| {
        // One machine: loopback; several: rank 0's host name, which the others resolve.
        if world.local_size == world.size {
            "127.0.0.1".into()
        } else {
            rendezvous::hostname()
        }
    });
    let mut text = Tensor::zeros([LEN], (Kind::Uint8, Device::Cpu));
    let mut hosted = None;
    if world.rank == 0 {
        let (store, port) =
            rendezvous::host(rendezvous::master_port(env)?.unwrap_or(0), "a free port, shared over MPI", timeout)?;
        let line = format!("{addr} {port}");
        anyhow::ensure!((line.len() as i64) < LEN, "rank 0's address {addr:?} is too long to share");
        text.narrow(0, 0, line.len() as i64).copy_(&Tensor::from_slice(line.as_bytes()));
        hosted = Some(store);
    }
    mpi.broadcast(&mut text, 0)?;
    let bytes: Vec<u8> = Vec::<u8>::try_from(&text)?.into_iter().take_while(|&b| b != 0).collect();
    let line = String::from_utf8_lossy(&bytes).into_owned();
    let (addr, port) = line
        .split_once(' ')
        .and_then(|(a, p)| Some((a.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| anyhow::anyhow!("rank {}: malformed rendezvous address from rank 0: {line:?}", world.rank))?;
    let master = Master { addr, port, from: "rank 0, over MPI".into() };
    let store = match hosted {
        Some(store) => store,
        None => rendezvous::connect(world.rank, &master, timeout)?,
    };
    Ok((store, master))
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
        two.launch = Launch::Launcher;
        assert_eq!(resolve(Backend::Auto, &two, Device::Cpu), Backend::Gloo);
        two.launch = Launch::Torchrun;
        assert_eq!(resolve(Backend::Auto, &two, Device::Cpu), Backend::Gloo);
        two.launch = Launch::Mpi;
        assert_eq!(resolve(Backend::Auto, &two, Device::Cpu), MPIRUN_CPU);
        assert_eq!(resolve(Backend::Mpi, &alone, Device::Cpu), Backend::Mpi);
    }

    #[test]
    fn after_the_rendezvous_the_store_waits_as_long_as_a_collective_may() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let vars = [("MASTER_ADDR", "127.0.0.1".to_string()), ("MASTER_PORT", port.to_string())];
        let env = |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        let mut w = World::single(None);
        w.launch = Launch::Torchrun;
        // Two seconds left of the start; collectives may take 700 s.
        let timeout = Duration::from_secs(700);
        let setup = meet(&w, Device::Cpu, &env, timeout, Instant::now() + Duration::from_secs(2)).expect("meet");
        assert_eq!(setup.store.timeout().expect("limit"), c10d_limit(timeout));
    }

    #[test]
    fn impossible_choices_are_refused_with_the_way_out() {
        let mut w = World::single(None);
        w.size = 2;
        let (t, d) = (Duration::from_secs(1), Instant::now() + Duration::from_secs(1));
        let e = connect(Backend::Single, &w, Device::Cpu, t, d).map(|_| ()).expect_err("single of 2").to_string();
        assert!(e.contains("rank 0 is one of 2"), "{e}");
        w.launch = Launch::Launcher;
        let e = connect(Backend::Mpi, &w, Device::Cpu, t, d).map(|_| ()).expect_err("mpi without mpirun").to_string();
        assert!(e.contains("started by segzoo-launch, not mpirun") && e.contains("\"gloo\""), "{e}");
        let e = connect(Backend::Nccl, &w, Device::Cpu, t, d).map(|_| ()).expect_err("nccl on a CPU").to_string();
        if HAS_NCCL {
            assert!(e.contains("NCCL needs a CUDA device but rank 0 runs on the CPU"), "{e}");
        } else {
            assert!(e.contains("needs the CUDA build of segzoo"), "{e}");
        }
    }
}
