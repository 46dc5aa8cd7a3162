//! Where this process stands in a job, from its environment, in this order: mpirun
//! (`OMPI_COMM_WORLD_*`, or `PMI_RANK`/`PMI_SIZE` for other MPIs), segzoo-launch
//! (`RANK_ID`, `RANK_SIZE`, `DEVICE_ID`, `LOCAL_RANK`, `RANK_TABLE_FILE`, the MindSpore
//! convention), otherwise a single process. Inconsistent settings are errors naming the
//! variable.
use tch::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    Single,
    Mpi,
    Launcher,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct World {
    pub rank: usize,
    pub size: usize,
    pub local_rank: usize,
    /// Ranks on this machine (`OMPI_COMM_WORLD_LOCAL_SIZE`, `LOCAL_SIZE`); the world size when unknown.
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

/// Read the world from `env` (use [`from_process_env`] for the real environment).
pub fn discover(env: Env) -> Result<World, WorldError> {
    let device_id = num(env, "DEVICE_ID")?;
    if let Some((rank, size)) = pair(env, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE")? {
        let local_rank = num(env, "OMPI_COMM_WORLD_LOCAL_RANK")?.unwrap_or(rank);
        let local_size = num(env, "OMPI_COMM_WORLD_LOCAL_SIZE")?.unwrap_or(size);
        return Ok(World { rank, size, local_rank, local_size, launch: Launch::Mpi, device_id });
    }
    if let Some((rank, size)) = pair(env, "PMI_RANK", "PMI_SIZE")? {
        let local_rank = num(env, "MPI_LOCALRANKID")?.or(num(env, "PMI_LOCAL_RANK")?).unwrap_or(rank);
        let local_size = num(env, "MPI_LOCALNRANKS")?.or(num(env, "PMI_LOCAL_SIZE")?).unwrap_or(size);
        return Ok(World { rank, size, local_rank, local_size, launch: Launch::Mpi, device_id });
    }
    if let Some((rank, size)) = pair(env, "RANK_ID", "RANK_SIZE")? {
        let local_rank = num(env, "LOCAL_RANK")?.unwrap_or(rank);
        let local_size = num(env, "LOCAL_SIZE")?;
        if let Some(n) = local_size {
            if local_rank >= n {
                return Err(WorldError::RankOutOfRange {
                    rank_var: "LOCAL_RANK",
                    rank: local_rank,
                    size_var: "LOCAL_SIZE",
                    size: n,
                });
            }
        }
        let local_size = local_size.unwrap_or(size);
        return Ok(World { rank, size, local_rank, local_size, launch: Launch::Launcher, device_id });
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

    /// `cuda:DEVICE_ID` (else `cuda:LOCAL_RANK`) when `cuda_devices` > 0, else the CPU.
    pub fn device(&self, cuda_devices: i64) -> Result<Device, WorldError> {
        if cuda_devices <= 0 {
            return Ok(Device::Cpu);
        }
        let (var, index) = match self.device_id {
            Some(d) => ("DEVICE_ID", d),
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
            ("RANK_ID", "0"),
            ("RANK_SIZE", "2"),
        ])
        .expect("mpi");
        assert_eq!((w.rank, w.size, w.local_rank, w.launch), (3, 8, 1, Launch::Mpi), "mpirun wins over the launcher");
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
        let w = world(&[("RANK_ID", "1"), ("RANK_SIZE", "2"), ("LOCAL_RANK", "1")]).expect("launcher");
        assert_eq!(w.device(0), Ok(Device::Cpu));
        assert_eq!(w.device(2), Ok(Device::Cuda(1)));
        let e = w.device(1).expect_err("beyond").to_string();
        assert_eq!(e, "LOCAL_RANK=1 but only 1 CUDA device(s) are visible");
        let w = world(&[("DEVICE_ID", "5")]).expect("single");
        assert_eq!(w.device(8), Ok(Device::Cuda(5)));
        assert!(w.device(4).expect_err("beyond").to_string().starts_with("DEVICE_ID=5"));
    }
}
