//! Distribution: where this process stands (`world.rs`, `slurm.rs`), which device it uses
//! (`device.rs`), the collective backends (`collective.rs`: the trait and `single`;
//! `process_group.rs`: c10d's gloo and NCCL over `c10d.rs`, meeting at `rendezvous.rs`;
//! `mpi.rs`; chosen in `backend.rs`; `nccl.rs`: what `segzoo env` says of NCCL), gradient
//! buckets (`buckets.rs`, `overlap.rs`) and their compression (`compression.rs`: the codecs;
//! `powersgd.rs`), the collective watchdog, its labels and the files ranks leave
//! (`watchdog.rs`, `op_label.rs`, `rank_files.rs`), and the collective self-test `segzoo
//! dist-check` runs (`check.rs`).
pub mod backend;
pub mod buckets;
pub mod c10d;
pub mod check;
pub mod collective;
pub mod compression;
pub mod device;
pub mod gather;
pub mod group_sum;
pub mod mpi;
pub mod nccl;
pub mod op_label;
pub mod overlap;
pub mod powersgd;
pub mod process_group;
pub mod rank_files;
pub mod rendezvous;
pub mod slurm;
pub mod watchdog;
pub mod world;

pub use collective::{BackendKind, Collective, Comm};

/// This process's world, device (the policy of `device.rs`) and collective group, from
/// the environment. CPU ranks sharing a machine split its cores between their torch pools.
/// In a job of several ranks (or under segzoo-launch) the collective watchdog starts first (`dist.timeout_s`,
/// `dist.init_timeout_s`), with heartbeats and error files in the launcher's log
/// directory or else in `files_dir` (the command's output directory).
pub fn join(
    device: Option<tch::Device>,
    dist: &crate::config::DistConfig,
    files_dir: Option<&std::path::Path>,
) -> anyhow::Result<(world::World, tch::Device, Comm)> {
    let w = world::from_process_env()?;
    let device = device::select(&w, device)?;
    if w.local_size > 1 && device == tch::Device::Cpu {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tch::set_num_threads((cores / w.local_size).max(1) as i32);
    }
    // Alone, under segzoo-launch too: its heartbeats tell the launcher the steps.
    if w.size > 1 || std::env::var_os("SEGZOO_LOG_DIR").is_some() {
        let files = rank_files::RankFiles::locate(&|k| std::env::var(k).ok(), files_dir, w.rank);
        let timeout = std::time::Duration::from_secs_f64(dist.timeout_s);
        watchdog::start(watchdog::Options { rank: w.rank, size: w.size, timeout, files });
    }
    let backend = backend::resolve(dist.backend, &w, device);
    let comm = {
        let start =
            format!("the job's start ({} rendezvous of {} ranks)", format!("{backend:?}").to_lowercase(), w.size);
        let init = std::time::Duration::from_secs_f64(dist.init_timeout_s);
        // The watchdog is the backstop: the rendezvous names missing ranks at `init`, and
        // connecting the group after it has its own limit (backend::CONNECT).
        let backstop = init + backend::CONNECT + std::time::Duration::from_secs(10);
        let _in_flight = watchdog::guard_start(&start, backstop);
        let timeout = std::time::Duration::from_secs_f64(dist.timeout_s);
        backend::connect(backend, &w, device, timeout, std::time::Instant::now() + init)?
    };
    Ok((w, device, comm))
}
