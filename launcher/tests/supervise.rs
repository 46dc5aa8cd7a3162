//! Supervision with shell workers (no tch): environments, fail-fast, signals, restarts,
//! logs, console prefixes and exit codes. Every run has a temporary directory as its
//! working directory, so no log lands in the source tree.
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const LAUNCH: &str = env!("CARGO_BIN_EXE_segzoo-launch");

fn table(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rank_tables").join(name)
}

fn launch(dir: &Path, table_name: &str, opts: &[&str], script: &str) -> Output {
    Command::new(LAUNCH)
        .arg("--rank-table")
        .arg(table(table_name))
        .args(opts)
        .args(["--", "sh", "-c", script])
        .current_dir(dir)
        .output()
        .expect("segzoo-launch runs")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

const ENV_DUMP: &str = r#"for k in RANK_TABLE_FILE RANK_SIZE RANK_ID DEVICE_ID LOCAL_RANK LOCAL_SIZE SERVER_ID MASTER_ADDR MASTER_PORT RANK WORLD_SIZE; do eval "echo $k=\$$k"; done > env_$RANK_ID"#;

fn env_of(dir: &Path, rank: usize) -> Vec<(String, String)> {
    read(dir.join(format!("env_{rank}")))
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').expect("k=v");
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn expect_env(dir: &Path, rank: usize, want: &[(&str, String)]) {
    let got = env_of(dir, rank);
    for (k, v) in want {
        let found = got.iter().find(|(g, _)| g == k).map(|(_, v)| v.as_str());
        assert_eq!(found, Some(v.as_str()), "rank {rank}: {k}");
    }
}

#[test]
fn every_rank_gets_its_environment_for_the_shipped_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let out = launch(d, "hccl_1p.json", &["--server-id", "127.0.0.1"], ENV_DUMP);
    assert!(out.status.success(), "{}", text(&out));
    expect_env(
        d,
        0,
        &[
            ("RANK_TABLE_FILE", std::path::absolute(table("hccl_1p.json")).expect("abs").display().to_string()),
            ("RANK_SIZE", "1".into()),
            ("RANK_ID", "0".into()),
            ("DEVICE_ID", "0".into()),
            ("LOCAL_RANK", "0".into()),
            ("LOCAL_SIZE", "1".into()),
            ("SERVER_ID", "127.0.0.1".into()),
            ("MASTER_ADDR", "127.0.0.1".into()),
            ("MASTER_PORT", "29500".into()),
            ("RANK", "0".into()),
            ("WORLD_SIZE", "1".into()),
        ],
    );

    let out = launch(d, "hccl_8p.json", &["--server-id", "127.0.0.1", "--master-port", "29611"], ENV_DUMP);
    assert!(out.status.success(), "{}", text(&out));
    for r in 0..8 {
        expect_env(
            d,
            r,
            &[
                ("RANK_SIZE", "8".into()),
                ("RANK_ID", r.to_string()),
                ("DEVICE_ID", r.to_string()),
                ("LOCAL_RANK", r.to_string()),
                ("LOCAL_SIZE", "8".into()),
                ("MASTER_ADDR", "127.0.0.1".into()),
                ("MASTER_PORT", "29611".into()),
                ("RANK", r.to_string()),
            ],
        );
    }

    // Two servers: each launcher starts its own eight ranks; they run together, as a group
    // led by the launcher of rank 0's server, reached on loopback.
    let port = free_port();
    let group = ["--group-port".to_string(), port.to_string()];
    let join = ["--group-addr".to_string(), format!("127.0.0.1:{port}")];
    let launchers: Vec<_> = [("10.0.0.1", 0, &group), ("10.0.0.2", 8, &join)]
        .into_iter()
        .map(|(server, first, group_opts)| {
            let sub = d.join(server);
            std::fs::create_dir_all(&sub).expect("dir");
            let child = Command::new(LAUNCH)
                .arg("--rank-table")
                .arg(table("hccl_16p_2servers.json"))
                .args(["--server-id", server, "--join-timeout", "20"])
                .args(group_opts)
                .args(["--", "sh", "-c", ENV_DUMP])
                .current_dir(&sub)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("segzoo-launch starts");
            (server, first, sub, child)
        })
        .collect();
    for (server, first, sub, child) in launchers {
        let out = child.wait_with_output().expect("segzoo-launch ends");
        assert!(out.status.success(), "{server}: {}", text(&out));
        for local in 0..8 {
            let r = first + local;
            expect_env(
                &sub,
                r,
                &[
                    ("RANK_SIZE", "16".into()),
                    ("RANK_ID", r.to_string()),
                    ("DEVICE_ID", local.to_string()),
                    ("LOCAL_RANK", local.to_string()),
                    ("LOCAL_SIZE", "8".into()),
                    ("SERVER_ID", server.into()),
                    ("MASTER_ADDR", "10.0.0.1".into()),
                    ("MASTER_PORT", "29500".into()),
                    ("WORLD_SIZE", "16".into()),
                ],
            );
        }
        assert!(!sub.join(format!("env_{}", (first + 8) % 16)).exists(), "only this server's ranks run here");
    }
}

/// A TCP port free on loopback a moment ago.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn a_failing_rank_stops_the_others_and_its_code_is_the_launchers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let script = r#"
        if [ "$RANK_ID" = 3 ]; then sleep 0.5; echo "loading shard"; echo "boom: bad data" >&2; exit 7; fi
        trap 'echo "rank $RANK_ID got SIGTERM"; exit 143' TERM
        echo "rank $RANK_ID training"
        sleep 60 & wait"#;
    let start = Instant::now();
    let out = launch(d, "hccl_8p.json", &["--server-id", "127.0.0.1", "--log-dir", "lg"], script);
    let took = start.elapsed();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(7), "{all}");
    // The others sleep for a minute unless stopped: they were stopped well before.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(all.contains("job failed: rank 3 (device 3) exit code 7"), "{all}");
    assert!(all.contains("last lines of lg/rank_3.log:\n    loading shard\n    boom: bad data"), "{all}");
    assert!(all.contains("[rank 5] rank 5 training"), "console lines carry the rank: {all}");
    for r in (0..8).filter(|&r| r != 3) {
        let log = read(d.join(format!("lg/rank_{r}.log")));
        assert!(log.contains(&format!("rank {r} got SIGTERM")), "rank {r}: {log}");
    }
    assert_eq!(read(d.join("lg/rank_3.log")), "loading shard\nboom: bad data\n");
}

#[test]
fn a_worker_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = r#"
        if [ "$RANK_ID" = 1 ]; then exit 2; fi
        trap '' TERM
        sleep 60"#;
    let start = Instant::now();
    let out = launch(dir.path(), "hccl_8p.json", &["--server-id", "127.0.0.1", "--grace-period", "1"], script);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(text(&out).contains("rank 0: killed by SIGKILL (9)"), "{}", text(&out));
}

/// Start the launcher on the 8-rank table with `script` (which touches `started_$RANK_ID`),
/// send it `sig` once every worker has started, and wait for it.
fn signal_the_launcher(d: &Path, sig: Signal, script: &str) -> std::process::ExitStatus {
    let mut child = Command::new(LAUNCH)
        .arg("--rank-table")
        .arg(table("hccl_8p.json"))
        .args(["--server-id", "127.0.0.1", "--console", "none", "--", "sh", "-c", script])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while (0..8).any(|r| !d.join(format!("started_{r}")).exists()) {
        assert!(Instant::now() < deadline, "workers did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).expect("signal");
    child.wait().expect("ends")
}

#[test]
fn sigterm_to_the_launcher_reaches_every_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let script = r#"
        trap 'echo term > term_$RANK_ID; exit 0' TERM
        touch started_$RANK_ID
        sleep 60 & wait"#;
    let status = signal_the_launcher(d, Signal::SIGTERM, script);
    assert_eq!(status.code(), Some(143));
    for r in 0..8 {
        assert_eq!(read(d.join(format!("term_{r}"))), "term\n", "rank {r}");
    }
}

#[test]
fn sigint_to_the_launcher_reaches_every_worker_and_it_exits_130() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // `sleep` in the foreground: a shell's background jobs ignore SIGINT.
    let script = r#"
        trap 'echo int > int_$RANK_ID; exit 0' INT
        touch started_$RANK_ID
        sleep 60"#;
    let start = Instant::now();
    let status = signal_the_launcher(d, Signal::SIGINT, script);
    assert_eq!(status.code(), Some(130));
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
    for r in 0..8 {
        assert_eq!(read(d.join(format!("int_{r}"))), "int\n", "rank {r}");
    }
}

#[test]
fn sigusr1_and_sigusr2_reach_every_worker_and_the_job_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let script = r#"
        trap 'touch usr1_$RANK_ID' USR1
        trap 'touch usr2_$RANK_ID' USR2
        touch started_$RANK_ID
        while [ ! -f done ]; do sleep 0.02; done"#;
    let mut child = Command::new(LAUNCH)
        .arg("--rank-table")
        .arg(table("hccl_8p.json"))
        .args(["--server-id", "127.0.0.1", "--console", "none", "--", "sh", "-c", script])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let wait_for = |prefix: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while (0..8).any(|r| !d.join(format!("{prefix}_{r}")).exists()) {
            assert!(Instant::now() < deadline, "not every worker wrote {prefix}_<rank>");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("started");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, Signal::SIGUSR1).expect("signal");
    wait_for("usr1");
    nix::sys::signal::kill(pid, Signal::SIGUSR2).expect("signal");
    wait_for("usr2");
    std::fs::write(d.join("done"), "").expect("write");
    assert_eq!(child.wait().expect("ends").code(), Some(0), "the signals did not end the job");
}

#[test]
fn max_restarts_restarts_the_group_exactly_that_often() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // Always failing: 1 + 1 attempts, then the failure's code.
    let out = launch(
        d,
        "hccl_8p.json",
        &["--server-id", "127.0.0.1", "--max-restarts", "1", "--console", "rank0"],
        r#"echo "attempt $SEGZOO_LAUNCH_RESTART" >> attempts_$RANK_ID; if [ "$RANK_ID" = 6 ]; then sleep 0.5; exit 5; fi; sleep 5"#,
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(text(&out).contains("restarting the local group (restart 1 of 1)"));
    for r in 0..8 {
        assert_eq!(read(d.join(format!("attempts_{r}"))), "attempt 0\nattempt 1\n", "rank {r}");
    }
    let log = read(d.join("logs/rank_6.log"));
    assert!(log.contains("---- segzoo-launch: restart 1 of 1 ----"), "{log}");
    // `--console rank0`: only rank 0's lines reach the console.
    assert!(!text(&out).contains("[rank 6]"));

    // Failing once, then fine: exit 0 after one restart.
    let d2 = d.join("again");
    std::fs::create_dir_all(&d2).expect("dir");
    let out = launch(
        &d2,
        "hccl_1p.json",
        &["--server-id", "127.0.0.1", "--max-restarts", "3"],
        r#"if [ ! -f once ]; then touch once; exit 1; fi; echo done"#,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(text(&out).matches("restarting the local group").count(), 1);
}

/// Launch `script` on the 1-rank table in a fresh subdirectory `name` of `d`.
fn launch_1p(d: &Path, name: &str, opts: &[&str], script: &str) -> (PathBuf, Output) {
    let sub = d.join(name);
    std::fs::create_dir_all(&sub).expect("dir");
    let mut all = vec!["--server-id", "127.0.0.1"];
    all.extend_from_slice(opts);
    let out = launch(&sub, "hccl_1p.json", &all, script);
    (sub, out)
}

#[test]
fn bad_input_exits_2_before_anything_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // No worker command: a usage error.
    let out = Command::new(LAUNCH).args(["--rank-table", "x.json"]).current_dir(d).output().expect("runs");
    assert_eq!(out.status.code(), Some(2), "no worker command: {}", text(&out));
    std::fs::write(d.join("bad.json"), "{ nope").expect("write");
    let cases: [(&[&str], &str); 4] = [
        (&["--rank-table", "missing.json"], "missing.json: cannot read"),
        (&["--rank-table", "bad.json"], "bad.json:1:3: malformed JSON"),
        (&["--server-id", "10.9.9.9"], "--server-id 10.9.9.9 is not in the rank table"),
        (&["--grace-period=-1"], "--grace-period -1: must be a non-negative number of seconds"),
    ];
    for (opts, needle) in cases {
        let mut cmd = Command::new(LAUNCH);
        if opts[0] != "--rank-table" {
            cmd.arg("--rank-table").arg(table("hccl_1p.json"));
        }
        if opts[0] != "--server-id" {
            cmd.args(["--server-id", "127.0.0.1"]);
        }
        let out = cmd.args(opts).args(["--", "touch", "started"]).current_dir(d).output().expect("runs");
        assert_eq!(out.status.code(), Some(2), "{opts:?}: {}", text(&out));
        assert!(text(&out).contains(needle), "{opts:?}: expected {needle:?} in {}", text(&out));
        assert!(!d.join("started").exists(), "{opts:?}: a worker started");
        assert!(!d.join("logs").exists(), "{opts:?}: the log dir was created");
    }
}

#[test]
fn a_missing_worker_binary_exits_1_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(LAUNCH)
        .arg("--rank-table")
        .arg(table("hccl_1p.json"))
        .args(["--server-id", "127.0.0.1", "--", "/nonexistent/worker"])
        .current_dir(dir.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("cannot start `/nonexistent/worker` for rank 0"), "{}", text(&out));
}

#[test]
fn a_log_dir_that_cannot_be_created_exits_1_before_any_worker_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("file"), "").expect("write");
    let (sub, out) = launch_1p(d, ".", &["--log-dir", "file/logs"], "touch started");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("cannot create log dir file/logs"), "{}", text(&out));
    assert!(!sub.join("started").exists(), "a worker started");
}

#[test]
fn a_workers_exit_code_or_128_plus_its_signal_is_the_launchers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("exit 0", 0, None),
        ("exit 7", 7, Some("rank 0 (device 0) exit code 7")),
        ("kill -KILL $$", 137, Some("rank 0 (device 0) killed by SIGKILL (9)")),
        ("kill -TERM $$", 143, Some("rank 0 (device 0) killed by SIGTERM (15)")),
    ];
    for (i, (script, code, message)) in cases.into_iter().enumerate() {
        let (_, out) = launch_1p(dir.path(), &format!("case_{i}"), &[], script);
        assert_eq!(out.status.code(), Some(code), "{script}: {}", text(&out));
        match message {
            Some(m) => assert!(text(&out).contains(&format!("job failed: {m}")), "{script}: {}", text(&out)),
            None => assert!(!text(&out).contains("job failed"), "{script}: {}", text(&out)),
        }
    }
}
