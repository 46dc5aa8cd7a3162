//! `segzoo dist-check`: every collective of the job's backend on every tensor kind with
//! known values, a barrier, then all-reduce bandwidth; each rank reports its line.
use super::{fail_together, parse_device, Output};
use crate::distributed::check;
use clap::Args;

#[derive(Args)]
pub struct DistCheckArgs {
    /// Collective backend (as dist.backend).
    #[arg(long, value_enum, default_value = "auto")]
    backend: crate::config::Backend,
    /// Seconds a collective may take before the rank ends the job (as dist.timeout_s).
    #[arg(long, default_value_t = 600.0)]
    timeout_s: f64,
    /// Seconds every rank may take to reach the rendezvous and connect (as dist.init_timeout_s).
    #[arg(long, default_value_t = 300.0)]
    init_timeout_s: f64,
    /// All-reduce size for the bandwidth figure, MiB.
    #[arg(long, default_value_t = 64.0)]
    mib: f64,
    #[arg(long, default_value_t = 10)]
    iters: usize,
    #[arg(long, value_parser = parse_device)]
    device: Option<tch::Device>,
}

pub fn run(args: DistCheckArgs) -> anyhow::Result<Output> {
    for (flag, v) in [("--timeout-s", args.timeout_s), ("--init-timeout-s", args.init_timeout_s)] {
        anyhow::ensure!(v > 0.0 && v.is_finite(), "{flag} {v}: must be a positive number of seconds");
    }
    let (w, device, comm) = {
        let dist = crate::config::DistConfig {
            backend: args.backend,
            timeout_s: args.timeout_s,
            init_timeout_s: args.init_timeout_s,
            ..Default::default()
        };
        crate::distributed::join(args.device, &dist, None)?
    };
    let checked = check::verify(comm.as_ref(), device)
        .and_then(|()| check::bandwidth(comm.as_ref(), device, args.mib, args.iters));
    let bw = fail_together(&comm, checked)?;
    let mut out = Output::none();
    out.line(format!(
        "rank {}/{} ({}, local rank {}) on {}: {} collectives ok for {}",
        w.rank,
        w.size,
        w.launch.name(),
        w.local_rank,
        crate::envinfo::device_name(device),
        comm.kind(),
        check::KINDS.map(|k| format!("{k:?}")).join(", ")
    ));
    if comm.rank() == 0 {
        out.line(format!(
            "all-reduce of {:.1} MiB f32 over {} rank(s): {:.2} ms, algorithm bandwidth {:.2} GB/s, bus bandwidth {:.2} GB/s",
            bw.bytes as f64 / (1 << 20) as f64,
            w.size,
            bw.ms,
            bw.alg_gbps,
            bw.bus_gbps
        ));
    }
    Ok(out)
}
