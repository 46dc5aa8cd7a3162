//! Where this process stands in a job, from its environment. The conventions, in this
//! order of precedence:
//! 1. mpirun: `OMPI_COMM_WORLD_*` (Open MPI), or `PMI_RANK`/`PMI_SIZE` (other MPIs);
//! 2. segzoo-launch: `RANK_ID`, `RANK_SIZE`, `DEVICE_ID`, `LOCAL_RANK`, `LOCAL_SIZE`,
//!    `RANK_TABLE_FILE` (MindSpore's convention);
//! 3. torchrun (and Kubeflow's PyTorchJob, most schedulers): `RANK`, `WORLD_SIZE`,
//!    `LOCAL_RANK`, `LOCAL_WORLD_SIZE` (with `MASTER_ADDR`/`MASTER_PORT`, `rendezvous.rs`);
//! 4. Slurm's srun: `SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID` inside a job step
//!    (`SLURM_STEP_ID`; a batch script's own shell is one process, whatever it asked for);
//! 5. otherwise a single process.
//!
//! Where several of 1–3 are set they must describe the same rank of the same world: a
//! contradiction is an error naming both sets of variables. Slurm's come last and never
//! contradict: `srun torchrun …` and `srun segzoo-launch …` leave them in the workers'
//! environment describing the launcher, not the worker. Malformed values are errors naming
//! the variable.
use super::slurm;
use tch::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    Single,
    Mpi,
    Launcher,
    Torchrun,
    Slurm,
}

impl Launch {
    /// How a user would name the launcher.
    pub fn name(self) -> &'static str {
        match self {
            Launch::Single => "single process",
            Launch::Mpi => "mpirun",
            Launch::Launcher => "segzoo-launch",
            Launch::Torchrun => "torchrun",
            Launch::Slurm => "srun",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct World {
    pub rank: usize,
    pub size: usize,
    pub local_rank: usize,
    /// Ranks on this machine; the world size when unknown.
    pub local_size: usize,
    pub launch: Launch,
    /// `DEVICE_ID` when the launcher (or the user) sets it.
    pub device_id: Option<usize>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WorldError {
    #[error("environment variable {var}={value:?} is not a non-negative integer")]
    NotANumber { var: &'static str, value: String },
    #[error("{var} is set but {missing} is not")]
    Missing { var: &'static str, missing: &'static str },
    #[error("{rank_var}={rank} is not below {size_var}={size}")]
    RankOutOfRange { rank_var: &'static str, rank: usize, size_var: &'static str, size: usize },
    #[error("{var}=0: a job has at least one rank")]
    EmptyWorld { var: &'static str },
    #[error("{var}={index} but only {visible} CUDA device(s) are visible")]
    NoSuchDevice { var: &'static str, index: usize, visible: i64 },
    #[error(
        "{first} ({first_launch}) and {second} ({second_launch}) describe different ranks or worlds: \
         this process has two launchers' variables; unset the stale ones"
    )]
    Contradiction { first: String, first_launch: &'static str, second: String, second_launch: &'static str },
}

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn num(env: Env, var: &'static str) -> Result<Option<usize>, WorldError> {
    match env(var) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| WorldError::NotANumber { var, value: v }),
    }
}

fn pair(env: Env, rank_var: &'static str, size_var: &'static str) -> Result<Option<(usize, usize)>, WorldError> {
    match (num(env, rank_var)?, num(env, size_var)?) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(WorldError::Missing { var: rank_var, missing: size_var }),
        (None, Some(_)) => Err(WorldError::Missing { var: size_var, missing: rank_var }),
        (Some(_), Some(0)) => Err(WorldError::EmptyWorld { var: size_var }),
        (Some(rank), Some(size)) if rank >= size => Err(WorldError::RankOutOfRange { rank_var, rank, size_var, size }),
        (Some(rank), Some(size)) => Ok(Some((rank, size))),
    }
}

/// A local rank, checked against the local size when both are known.
fn local(
    env: Env,
    rank_var: &'static str,
    size_var: &'static str,
    rank: usize,
    size: usize,
) -> Result<(usize, usize), WorldError> {
    let local_rank = num(env, rank_var)?.unwrap_or(rank);
    let local_size = num(env, size_var)?;
    if let Some(n) = local_size {
        if local_rank >= n {
            return Err(WorldError::RankOutOfRange { rank_var, rank: local_rank, size_var, size: n });
        }
    }
    Ok((local_rank, local_size.unwrap_or(size)))
}

/// One launcher's description of this process, and the variables it came from.
struct Claim {
    world: World,
    vars: String,
}

fn claim(
    env: Env,
    launch: Launch,
    (rank_var, size_var): (&'static str, &'static str),
    (local_rank_var, local_size_var): (&'static str, &'static str),
    device_id: Option<usize>,
) -> Result<Option<Claim>, WorldError> {
    let Some((rank, size)) = pair(env, rank_var, size_var)? else { return Ok(None) };
    let (local_rank, local_size) = local(env, local_rank_var, local_size_var, rank, size)?;
    let vars = format!("{rank_var}={rank} {size_var}={size}");
    Ok(Some(Claim { world: World { rank, size, local_rank, local_size, launch, device_id }, vars }))
}

/// Read the world from `env` (use [`from_process_env`] for the real environment).
pub fn discover(env: Env) -> Result<World, WorldError> {
    let device_id = num(env, "DEVICE_ID")?;
    let mpi = match claim(
        env,
        Launch::Mpi,
        ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
        ("OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
        device_id,
    )? {
        Some(c) => Some(c),
        None => {
            // Intel MPI and MPICH name the local rank and size their own ways.
            let local_rank = if env("MPI_LOCALRANKID").is_some() { "MPI_LOCALRANKID" } else { "PMI_LOCAL_RANK" };
            let local_size = if env("MPI_LOCALNRANKS").is_some() { "MPI_LOCALNRANKS" } else { "PMI_LOCAL_SIZE" };
            claim(env, Launch::Mpi, ("PMI_RANK", "PMI_SIZE"), (local_rank, local_size), device_id)?
        }
    };
    let launcher = claim(env, Launch::Launcher, ("RANK_ID", "RANK_SIZE"), ("LOCAL_RANK", "LOCAL_SIZE"), device_id)?;
    let torchrun = claim(env, Launch::Torchrun, ("RANK", "WORLD_SIZE"), ("LOCAL_RANK", "LOCAL_WORLD_SIZE"), device_id)?;
    let claims: Vec<Claim> = [mpi, launcher, torchrun].into_iter().flatten().collect();
    if let Some((first, rest)) = claims.split_first() {
        for other in rest {
            if (other.world.rank, other.world.size) != (first.world.rank, first.world.size) {
                return Err(WorldError::Contradiction {
                    first: first.vars.clone(),
                    first_launch: first.world.launch.name(),
                    second: other.vars.clone(),
                    second_launch: other.world.launch.name(),
                });
            }
        }
        return Ok(first.world.clone());
    }
    if env("SLURM_STEP_ID").is_some() {
        if let Some((rank, size)) = pair(env, "SLURM_PROCID", "SLURM_NTASKS")? {
            let local_rank = num(env, "SLURM_LOCALID")?.unwrap_or(rank);
            let local_size = match num(env, "SLURM_NTASKS_PER_NODE")? {
                Some(n) => n,
                None => slurm::tasks_on_this_node(env).unwrap_or(size),
            };
            return Ok(World { rank, size, local_rank, local_size, launch: Launch::Slurm, device_id });
        }
    }
    Ok(World::single(device_id))
}

pub fn from_process_env() -> Result<World, WorldError> {
    discover(&|k| std::env::var(k).ok())
}

impl World {
    /// A process alone (device from `DEVICE_ID` when given).
    pub fn single(device_id: Option<usize>) -> World {
        World { rank: 0, size: 1, local_rank: 0, local_size: 1, launch: Launch::Single, device_id }
    }

    /// This process's device among the `cuda_devices` it sees: `cuda:DEVICE_ID` when that
    /// is set (an error when it does not exist); else `cuda:0` when it sees one GPU (a
    /// launcher that binds a GPU per process through `CUDA_VISIBLE_DEVICES`: srun
    /// `--gpus-per-task=1`, Kubernetes, …, where `LOCAL_RANK` still counts the node's
    /// processes); else `cuda:LOCAL_RANK`; the CPU without CUDA.
    pub fn device(&self, cuda_devices: i64) -> Result<Device, WorldError> {
        if cuda_devices <= 0 {
            return Ok(Device::Cpu);
        }
        let (var, index) = match self.device_id {
            Some(d) => ("DEVICE_ID", d),
            None if cuda_devices == 1 => return Ok(Device::Cuda(0)),
            None => ("LOCAL_RANK", self.local_rank),
        };
        if index as i64 >= cuda_devices {
            return Err(WorldError::NoSuchDevice { var, index, visible: cuda_devices });
        }
        Ok(Device::Cuda(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn world(vars: &[(&str, &str)]) -> Result<World, WorldError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        discover(&|k| map.get(k).cloned())
    }

    #[test]
    fn discovery_order_and_values() {
        assert_eq!(
            world(&[]).expect("single"),
            World { rank: 0, size: 1, local_rank: 0, local_size: 1, launch: Launch::Single, device_id: None }
        );
        let w = world(&[
            ("OMPI_COMM_WORLD_RANK", "3"),
            ("OMPI_COMM_WORLD_SIZE", "8"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
        ])
        .expect("mpi");
        assert_eq!((w.rank, w.size, w.local_rank, w.launch), (3, 8, 1, Launch::Mpi), "agreeing: mpirun first");
        let w = world(&[("PMI_RANK", "1"), ("PMI_SIZE", "2")]).expect("pmi");
        assert_eq!((w.rank, w.size, w.local_rank, w.launch), (1, 2, 1, Launch::Mpi));
        let w = world(&[
            ("RANK_ID", "9"),
            ("RANK_SIZE", "16"),
            ("LOCAL_RANK", "1"),
            ("LOCAL_SIZE", "8"),
            ("DEVICE_ID", "1"),
        ])
        .expect("launcher");
        assert_eq!((w.rank, w.size, w.local_rank, w.launch, w.device_id), (9, 16, 1, Launch::Launcher, Some(1)));
    }

    #[test]
    fn torchrun_and_slurm_conventions() {
        let w = world(&[
            ("RANK", "5"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "1"),
            ("LOCAL_WORLD_SIZE", "4"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "29400"),
        ])
        .expect("torchrun");
        assert_eq!(
            w,
            World { rank: 5, size: 8, local_rank: 1, local_size: 4, launch: Launch::Torchrun, device_id: None }
        );
        let slurm = [
            ("SLURM_PROCID", "6"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "2"),
            ("SLURM_NODEID", "1"),
            ("SLURM_STEP_TASKS_PER_NODE", "4(x2)"),
            ("SLURM_JOB_NODELIST", "gpu[01-02]"),
        ];
        let with_step = [&slurm[..], &[("SLURM_STEP_ID", "0")]].concat();
        let w = world(&with_step).expect("srun");
        assert_eq!(w, World { rank: 6, size: 8, local_rank: 2, local_size: 4, launch: Launch::Slurm, device_id: None });
        // A batch script's own shell has SLURM_PROCID=0 and the allocation's task count, but
        // no job step: it is one process.
        assert_eq!(world(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "8")]).expect("batch").launch, Launch::Single);
        // srun torchrun …: the worker is torchrun's rank; srun's variables describe torchrun.
        let nested = [&with_step[..], &[("RANK", "3"), ("WORLD_SIZE", "16"), ("LOCAL_RANK", "3")]].concat();
        let w = world(&nested).expect("torchrun under srun");
        assert_eq!((w.rank, w.size, w.launch), (3, 16, Launch::Torchrun));
    }

    #[test]
    fn two_launchers_that_disagree_are_named() {
        let e = world(&[("RANK_ID", "0"), ("RANK_SIZE", "2"), ("RANK", "1"), ("WORLD_SIZE", "2")])
            .expect_err("contradiction")
            .to_string();
        assert!(
            e.starts_with(
                "RANK_ID=0 RANK_SIZE=2 (segzoo-launch) and RANK=1 WORLD_SIZE=2 (torchrun) describe different"
            ),
            "{e}"
        );
        let e = world(&[
            ("OMPI_COMM_WORLD_RANK", "3"),
            ("OMPI_COMM_WORLD_SIZE", "8"),
            ("RANK_ID", "3"),
            ("RANK_SIZE", "4"),
        ])
        .expect_err("contradiction")
        .to_string();
        assert!(e.contains("OMPI_COMM_WORLD_RANK=3 OMPI_COMM_WORLD_SIZE=8 (mpirun) and RANK_ID=3 RANK_SIZE=4"), "{e}");
        let e = world(&[("RANK", "0")]).expect_err("no size").to_string();
        assert_eq!(e, "RANK is set but WORLD_SIZE is not");
        let e = world(&[("SLURM_STEP_ID", "0"), ("SLURM_PROCID", "2"), ("SLURM_NTASKS", "2")])
            .expect_err("range")
            .to_string();
        assert_eq!(e, "SLURM_PROCID=2 is not below SLURM_NTASKS=2");
    }

    #[test]
    fn inconsistent_environments_name_the_variable() {
        let e = world(&[("RANK_ID", "4"), ("RANK_SIZE", "4")]).expect_err("rank ≥ size").to_string();
        assert_eq!(e, "RANK_ID=4 is not below RANK_SIZE=4");
        let e = world(&[("RANK_ID", "1")]).expect_err("no size").to_string();
        assert_eq!(e, "RANK_ID is set but RANK_SIZE is not");
        let e = world(&[("OMPI_COMM_WORLD_RANK", "x"), ("OMPI_COMM_WORLD_SIZE", "2")]).expect_err("nan").to_string();
        assert!(e.contains("OMPI_COMM_WORLD_RANK=\"x\""), "{e}");
        let e = world(&[("RANK_ID", "0"), ("RANK_SIZE", "0")]).expect_err("empty").to_string();
        assert!(e.contains("RANK_SIZE=0"), "{e}");
        let e = world(&[("RANK_ID", "0"), ("RANK_SIZE", "2"), ("LOCAL_RANK", "2"), ("LOCAL_SIZE", "2")])
            .expect_err("local")
            .to_string();
        assert_eq!(e, "LOCAL_RANK=2 is not below LOCAL_SIZE=2");
    }

    #[test]
    fn device_choice() {
        let w = world(&[("RANK", "1"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "1")]).expect("torchrun");
        assert_eq!(w.device(0), Ok(Device::Cpu));
        assert_eq!(w.device(2), Ok(Device::Cuda(1)));
        let w = world(&[("RANK", "3"), ("WORLD_SIZE", "8"), ("LOCAL_RANK", "3")]).expect("torchrun");
        let e = w.device(2).expect_err("beyond").to_string();
        assert_eq!(e, "LOCAL_RANK=3 but only 2 CUDA device(s) are visible");
        let w = world(&[("DEVICE_ID", "5")]).expect("single");
        assert_eq!(w.device(8), Ok(Device::Cuda(5)));
        assert!(w.device(4).expect_err("beyond").to_string().starts_with("DEVICE_ID=5"));
    }

    /// srun --gpus-per-task=1, a Kubernetes pod per GPU: each process sees one GPU, as
    /// cuda:0, whatever its local rank; an explicit DEVICE_ID must still exist.
    #[test]
    fn a_process_that_sees_one_gpu_uses_it_whatever_its_local_rank() {
        let srun = [
            ("SLURM_STEP_ID", "0"),
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "5"),
            ("SLURM_NTASKS_PER_NODE", "8"),
        ];
        let w = world(&srun).expect("srun");
        assert_eq!((w.local_rank, w.device(1)), (5, Ok(Device::Cuda(0))));
        let w = world(&[("RANK", "3"), ("WORLD_SIZE", "4"), ("LOCAL_RANK", "3")]).expect("torchrun");
        assert_eq!(w.device(1), Ok(Device::Cuda(0)));
        let w =
            world(&[("RANK_ID", "1"), ("RANK_SIZE", "2"), ("LOCAL_RANK", "1"), ("DEVICE_ID", "1")]).expect("launcher");
        let e = w.device(1).expect_err("no such device").to_string();
        assert_eq!(e, "DEVICE_ID=1 but only 1 CUDA device(s) are visible");
    }
}
