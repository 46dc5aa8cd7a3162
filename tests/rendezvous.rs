//! Jobs started the way other launchers start them, with the environment set by the test
//! itself (torchrun is not in the slim venv): torchrun's variables and Slurm's train like
//! one process with the whole batch; and the rendezvous's failures name what is wrong.
#[path = "common/jobs.rs"]
mod jobs;

use jobs::{free_port, max_diff, ok, segzoo, setup, step_weights, text, BIN};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Every launcher convention segzoo reads: a test sets exactly the ones it means.
const CONVENTIONS: [&str; 20] = [
    "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "PMI_RANK",
    "PMI_SIZE",
    "RANK_ID",
    "RANK_SIZE",
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "SLURM_STEP_ID",
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "SLURM_LOCALID",
    "SLURM_JOB_NODELIST",
    "SLURM_JOB_ID",
    "SERVER_ID",
    "GLOO_SOCKET_IFNAME",
];

/// `n` segzoo processes at once, rank `r` with the variables `env(r)`; their outputs in
/// rank order.
fn ranks(d: &Path, n: usize, env: impl Fn(usize) -> Vec<(String, String)>, args: &[&str]) -> Vec<Output> {
    let children: Vec<_> = (0..n)
        .map(|r| {
            let mut cmd = Command::new(BIN);
            for var in CONVENTIONS {
                cmd.env_remove(var);
            }
            cmd.args(args)
                .envs(env(r))
                .current_dir(d)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("segzoo starts")
        })
        .collect();
    children.into_iter().map(|c| c.wait_with_output().expect("segzoo ends")).collect()
}

fn vars(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// A port `15000 + job id % 10000` free a moment ago: Slurm's default rendezvous port for
/// that job id.
fn free_slurm_job_port() -> (u64, u16) {
    // From the test's pid, so that concurrent runs start at different places.
    let start = std::process::id() as u64;
    for step in 0..10000u64 {
        let job = (start + step * 7919) % 10000;
        let port = 15000 + job as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return (job, port);
        }
    }
    panic!("no free port in 15000-24999");
}

#[test]
fn torchrun_and_slurm_environments_train_like_one_process_with_the_whole_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup(d);
    let common = ["train", "--config", "c.toml", "--max-steps", "3", "--set", "eval.start=99"];
    ok(segzoo(d, &[&common[..], &["--set", "train.batch_size=4", "--set", "train.output_dir=one"]].concat()));
    let two = |out: &'static str| [&common[..], &["--set", "train.batch_size=2", "--set", out]].concat();

    let port = free_port().to_string();
    let torchrun = |r: usize| {
        vars(&[
            ("RANK", r.to_string()),
            ("WORLD_SIZE", "2".into()),
            ("LOCAL_RANK", r.to_string()),
            ("LOCAL_WORLD_SIZE", "2".into()),
            ("MASTER_ADDR", "127.0.0.1".into()),
            ("MASTER_PORT", port.clone()),
        ])
    };
    let outs = ranks(d, 2, torchrun, &two("train.output_dir=torchrun"));
    for o in &outs {
        assert!(o.status.success(), "{}", text(o));
    }
    assert!(text(&outs[0]).contains("data parallel over 2 ranks (gloo backend): global batch 4"), "{}", text(&outs[0]));

    // srun: the address is the node list's first host, the port derived from the job id.
    let (job, _) = free_slurm_job_port();
    let slurm = |r: usize| {
        vars(&[
            ("SLURM_STEP_ID", "0".into()),
            ("SLURM_PROCID", r.to_string()),
            ("SLURM_NTASKS", "2".into()),
            ("SLURM_LOCALID", r.to_string()),
            ("SLURM_JOB_NODELIST", "localhost".into()),
            ("SLURM_JOB_ID", job.to_string()),
        ])
    };
    let outs = ranks(d, 2, slurm, &two("train.output_dir=slurm"));
    for o in &outs {
        assert!(o.status.success(), "{}", text(o));
    }
    let one = step_weights(&d.join("one"), 3);
    for run in ["torchrun", "slurm"] {
        let diff = max_diff(&one, &step_weights(&d.join(run), 3));
        assert!(diff <= 1e-5, "{run}: parameters after 3 steps differ from one process's by {diff}");
    }
    assert!(max_diff(&one, &step_weights(&d.join("one"), 1)) > 1e-3, "the weights moved");
}

fn torchrun_rank(r: usize, size: usize, port: u16) -> Vec<(String, String)> {
    vars(&[
        ("RANK", r.to_string()),
        ("WORLD_SIZE", size.to_string()),
        ("MASTER_ADDR", "127.0.0.1".into()),
        ("MASTER_PORT", port.to_string()),
    ])
}

const CHECK: [&str; 6] = ["dist-check", "--init-timeout-s", "3", "--mib", "0.1", "--iters"];

/// A rank that never comes is named by those that did, within `dist.init_timeout_s`; a rank
/// whose rank 0 never comes says where it looked.
#[test]
fn a_rank_that_never_comes_is_named_within_the_init_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let port = free_port();
    let start = Instant::now();
    // Ranks 0 and 2 of 3; rank 1 never starts.
    let outs = ranks(d, 2, |k| torchrun_rank(k * 2, 3, port), &[&CHECK[..], &["1"]].concat());
    let took = start.elapsed();
    for o in &outs {
        assert!(!o.status.success());
        let all = text(o);
        assert!(all.contains(&format!("rendezvous at 127.0.0.1:{port}: 2 of 3 ranks joined")), "{all}");
        assert!(all.contains("missing: rank 1 "), "{all}");
    }
    assert!(took >= Duration::from_millis(2500) && took < Duration::from_secs(60), "{took:?}");

    let port = free_port();
    let outs = ranks(d, 1, |_| torchrun_rank(1, 2, port), &[&CHECK[..], &["1"]].concat());
    let all = text(&outs[0]);
    assert!(!outs[0].status.success());
    assert!(
        all.contains(&format!("rank 1 cannot reach the rendezvous at 127.0.0.1:{port} (MASTER_ADDR, MASTER_PORT)")),
        "{all}"
    );
}

#[test]
fn an_occupied_port_and_a_missing_address_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let outs = ranks(d, 1, |_| torchrun_rank(0, 2, port), &[&CHECK[..], &["1"]].concat());
    let all = text(&outs[0]);
    assert!(!outs[0].status.success());
    assert!(all.contains(&format!("port {port} (MASTER_ADDR, MASTER_PORT) is already in use")), "{all}");
    drop(taken);

    let no_addr = |_| vars(&[("RANK", "0".into()), ("WORLD_SIZE", "2".into()), ("MASTER_PORT", "29500".into())]);
    let outs = ranks(d, 1, no_addr, &[&CHECK[..], &["1"]].concat());
    let all = text(&outs[0]);
    assert!(all.contains("rank 0 of 2 (torchrun) has no rendezvous address: MASTER_ADDR is not set"), "{all}");
    let both = |_| {
        vars(&[("RANK", "1".into()), ("WORLD_SIZE", "2".into()), ("RANK_ID", "0".into()), ("RANK_SIZE", "2".into())])
    };
    let outs = ranks(d, 1, both, &[&CHECK[..], &["1"]].concat());
    let all = text(&outs[0]);
    assert!(all.contains("RANK_ID=0 RANK_SIZE=2 (segzoo-launch) and RANK=1 WORLD_SIZE=2 (torchrun)"), "{all}");
}
