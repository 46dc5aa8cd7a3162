//! The commands of the `segzoo` binary: each file holds one command's (or a small
//! family's) arguments and logic, and returns an [`Output`] that `main.rs` prints in one
//! place (`output.rs`). `main.rs` keeps only the top-level parser and the dispatch.
pub mod bench;
pub mod data;
pub mod dist_check;
pub mod eval;
pub mod infer;
pub mod info;
pub mod output;
pub mod runs;
pub mod train;
pub mod weights;

pub use output::{write_json, ExitWith, Output};

use crate::config::{load_config, Config, Override};
use std::path::Path;

/// `--device`: `cpu` or `cuda:N`.
pub fn parse_device(s: &str) -> Result<tch::Device, String> {
    match s {
        "cpu" => Ok(tch::Device::Cpu),
        _ => s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
            .map(tch::Device::Cuda)
            .ok_or_else(|| format!("{s:?}: expected cpu or cuda:N")),
    }
}

/// `WxH`, both positive.
pub fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(|| format!("{s:?}: expected WxH, e.g. 2048x1024"))?;
    let n = |v: &str| {
        v.trim().parse::<usize>().ok().filter(|&v| v > 0).ok_or_else(|| format!("{s:?}: {v:?} is not a positive size"))
    };
    Ok((n(w)?, n(h)?))
}

/// A config file with `--set` overrides applied.
pub fn config_with(file: &Path, set: &[String]) -> anyhow::Result<Config> {
    let overrides: Vec<Override> =
        set.iter().map(|s| s.parse::<Override>().map_err(anyhow::Error::from)).collect::<Result<_, _>>()?;
    Ok(load_config(file, &overrides)?)
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// On one rank of several, a failure ends the whole job with this rank named: under
/// mpirun MPI_Abort stops every rank; under segzoo-launch the exit code does.
pub fn fail_together<T>(comm: &crate::distributed::Comm, result: anyhow::Result<T>) -> anyhow::Result<T> {
    match result {
        Err(e) if comm.size() > 1 && e.downcast_ref::<crate::train::preempt::Interrupted>().is_none() => {
            eprintln!("error: rank {}/{} failed: {e:#}", comm.rank(), comm.size());
            crate::distributed::watchdog::record_failure("error", &e, 1);
            comm.abort(1)
        }
        r => r,
    }
}
