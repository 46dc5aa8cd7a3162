//! `segzoo env`: what this process sees of libtorch, CUDA, NCCL and MPI.
//! Users run it first when a cluster misbehaves, so nothing here may fail hard.
use crate::distributed::{mpi, nccl, world};
use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Serialize)]
pub struct EnvReport {
    pub segzoo_version: String,
    pub libtorch_version: String,
    pub torch_flavour: String,
    pub cuda_available: bool,
    pub cuda_device_count: i64,
    pub cuda_devices: Vec<String>,
    pub cudnn_available: bool,
    pub nccl: nccl::NcclStatus,
    pub mpi: mpi::MpiStatus,
    pub torch_threads: i32,
    /// This process's place in the job, or why it could not be determined.
    pub world: Result<WorldLine, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorldLine {
    pub rank: usize,
    pub size: usize,
    pub local_rank: usize,
    pub launch: String,
    pub device: String,
    /// The collective backend `dist.backend = "auto"` picks: nccl on GPUs, gloo on CPU (mpi
    /// under mpirun), single alone.
    pub backend: String,
}

fn world_line(cuda_devices: i64) -> Result<WorldLine, String> {
    let w = world::from_process_env().map_err(|e| e.to_string())?;
    let device = w.device(cuda_devices).map_err(|e| e.to_string())?;
    let backend =
        format!("{:?}", crate::distributed::backend::resolve(crate::config::Backend::Auto, &w, device)).to_lowercase();
    Ok(WorldLine {
        rank: w.rank,
        size: w.size,
        local_rank: w.local_rank,
        launch: w.launch.name().to_string(),
        device: device_name(device),
        backend,
    })
}

/// `cuda:N` or `cpu`.
pub fn device_name(device: tch::Device) -> String {
    match device {
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}

impl EnvReport {
    pub fn collect() -> Self {
        let cuda_available = tch::Cuda::is_available();
        let cuda_device_count = if cuda_available { tch::Cuda::device_count() } else { 0 };
        EnvReport {
            segzoo_version: env!("CARGO_PKG_VERSION").to_string(),
            libtorch_version: env!("SEGZOO_LIBTORCH_VERSION").to_string(),
            torch_flavour: match env!("SEGZOO_TORCH_FLAVOUR") {
                "" => "unknown".to_string(),
                f => f.to_string(),
            },
            cuda_available,
            cuda_device_count,
            cuda_devices: nccl::device_names(cuda_device_count),
            cudnn_available: cuda_available && tch::Cuda::cudnn_is_available(),
            nccl: nccl::probe(),
            mpi: mpi::probe(),
            torch_threads: tch::get_num_threads(),
            world: world_line(cuda_device_count),
        }
    }
}

impl fmt::Display for EnvReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "segzoo version:   {}", self.segzoo_version)?;
        writeln!(f, "libtorch version: {} ({} install)", self.libtorch_version, self.torch_flavour)?;
        if self.cuda_available {
            writeln!(f, "CUDA available:   yes, {} device(s)", self.cuda_device_count)?;
            for (i, name) in self.cuda_devices.iter().enumerate() {
                writeln!(f, "  cuda:{i}          {name}")?;
            }
        } else {
            writeln!(f, "CUDA available:   no")?;
        }
        writeln!(f, "cuDNN available:  {}", if self.cudnn_available { "yes" } else { "no" })?;
        match (&self.nccl.version, &self.nccl.detail) {
            (Some(v), _) => writeln!(f, "NCCL:             found, version {v}")?,
            (None, Some(why)) => writeln!(f, "NCCL:             not usable: {why}")?,
            (None, None) => writeln!(f, "NCCL:             not usable")?,
        }
        writeln!(f, "MPI:              {} (MPI {})", self.mpi.library, self.mpi.standard)?;
        writeln!(f, "torch threads:    {}", self.torch_threads)?;
        match &self.world {
            Ok(w) => write!(
                f,
                "world:            rank {}/{} local rank {} device {} backend {} ({})",
                w.rank, w.size, w.local_rank, w.device, w.backend, w.launch
            ),
            Err(e) => write!(f, "world:            not usable: {e}"),
        }
    }
}
