//! The launchers of a two-server job as a group, on loopback, with shell workers: a
//! failure anywhere stops every server, a lost launcher is noticed, restarts involve every
//! server, and every launcher prints the same summary. Each test writes its own table
//! (server 127.0.0.1 with ranks 0,1 and 127.0.0.2 with ranks 2,3) into a temporary
//! directory, which is also the launchers' working directory.
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const LAUNCH: &str = env!("CARGO_BIN_EXE_segzoo-launch");
const SERVERS: [&str; 2] = ["127.0.0.1", "127.0.0.2"];
/// No test waits longer for a launcher: a hung one fails the test instead of the suite.
const LIMIT: Duration = Duration::from_secs(30);

/// Write the two-server table; `rank0_second`: the second listed server holds ranks 0,1.
fn write_table(dir: &Path, rank0_second: bool) -> PathBuf {
    let ranks = if rank0_second { [2, 0] } else { [0, 2] };
    let server = |id: &str, first: usize| {
        format!(
            r#"{{"server_id": "{id}", "device": [{{"device_id": "0", "rank_id": "{first}"}}, {{"device_id": "1", "rank_id": "{}"}}]}}"#,
            first + 1
        )
    };
    let text = format!(
        r#"{{"version": "1.0", "server_count": "2", "status": "completed", "server_list": [{}, {}]}}"#,
        server(SERVERS[0], ranks[0]),
        server(SERVERS[1], ranks[1])
    );
    let path = dir.join("table.json");
    std::fs::write(&path, text).expect("write table");
    path
}

/// Two TCP ports free on loopback a moment ago: the rendezvous's (`--master-port`, never
/// listened on by shell workers) and the group's.
#[derive(Clone, Copy)]
struct Ports {
    master: u16,
    group: u16,
}

fn free_ports() -> Ports {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let (a, b) = (bind(), bind());
    let port = |l: &std::net::TcpListener| l.local_addr().expect("addr").port();
    Ports { master: port(&a), group: port(&b) }
}

/// One launcher, its output going to `out_<k>.txt` (a file: nothing can block on a pipe).
struct Launcher {
    child: Child,
    out: PathBuf,
}

/// Start the launcher of server `k` (0 or 1) with log dir `l<k+1>`; `leader`: it holds
/// rank 0 and listens on the group port, else it joins 127.0.0.1:<group port>.
fn start(dir: &Path, k: usize, leader: bool, ports: Ports, opts: &[&str], script: &str) -> Launcher {
    let out = dir.join(format!("out_{k}.txt"));
    let file = std::fs::File::create(&out).expect("output file");
    let group = if leader {
        vec!["--group-port".to_string(), ports.group.to_string()]
    } else {
        vec!["--group-addr".to_string(), format!("127.0.0.1:{}", ports.group)]
    };
    // A test may choose its own join timeout; by default no launcher waits for ever.
    let join = if opts.contains(&"--join-timeout") { vec![] } else { vec!["--join-timeout", "20"] };
    let child = Command::new(LAUNCH)
        .arg("--rank-table")
        .arg(dir.join("table.json"))
        .args(["--server-id", SERVERS[k], "--log-dir", &format!("l{}", k + 1)])
        .args(join)
        .args(["--master-port", &ports.master.to_string()])
        .args(group)
        .args(opts)
        .args(["--", "sh", "-c", script])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("dup"))
        .stderr(file)
        .spawn()
        .expect("segzoo-launch starts");
    Launcher { child, out }
}

/// Both launchers of a table whose rank 0 is on the first server.
fn start_both(dir: &Path, opts: &[&str], script: &str) -> [Launcher; 2] {
    write_table(dir, false);
    let ports = free_ports();
    [start(dir, 0, true, ports, opts, script), start(dir, 1, false, ports, opts, script)]
}

impl Launcher {
    /// Wait for the exit (at most [`LIMIT`]); its code and output, and when it ended.
    fn wait(mut self) -> (Option<i32>, String, SystemTime) {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return (status.code(), read(&self.out), SystemTime::now());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the launcher did not end within {LIMIT:?}: {}", read(&self.out));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), sig).expect("signal the launcher");
    }
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

fn wait_for_files(dir: &Path, names: &[String]) {
    let deadline = Instant::now() + LIMIT;
    while let Some(missing) = names.iter().find(|n| !dir.join(n).exists()) {
        assert!(Instant::now() < deadline, "{missing} never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn names(prefix: &str, ranks: impl IntoIterator<Item = usize>) -> Vec<String> {
    ranks.into_iter().map(|r| format!("{prefix}_{r}")).collect()
}

/// Gone, or a zombie nobody reaped yet: either way it runs no more.
fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// Rank `failing` waits until the others have trapped SIGTERM (`started_<k>`), then fails
/// with `fail` (shell); the others record the SIGTERM in `term_<k>`.
fn fail_once_started(failing: usize, fail: &str) -> String {
    format!(
        r#"if [ "$RANK_ID" = {failing} ]; then
             while [ ! -f started_{a} ] || [ ! -f started_{b} ] || [ ! -f started_{c} ]; do sleep 0.02; done
             {fail}
           fi
           trap 'touch term_$RANK_ID; exit 143' TERM
           touch started_$RANK_ID
           sleep 60 & wait"#,
        a = (failing + 1) % 4,
        b = (failing + 2) % 4,
        c = (failing + 3) % 4,
    )
}

#[test]
fn a_rank_failing_on_one_server_stops_every_server_and_both_print_the_same_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let script =
        fail_once_started(3, r#"echo "loading shard"; echo "boom: bad data" >&2; touch failed_$RANK_ID; exit 7"#);
    let [first, second] = start_both(d, &[], &script);
    let ends = [first.wait(), second.wait()];
    let failed_at = std::fs::metadata(d.join("failed_3")).and_then(|m| m.modified()).expect("rank 3 failed");
    let summary = "segzoo-launch: job failed: server 127.0.0.2, rank 3 (device 1) exit code 7\n\
                   segzoo-launch: last lines of l2/rank_3.log:\n    loading shard\n    boom: bad data\n";
    for (k, (code, out, ended)) in ends.iter().enumerate() {
        assert_eq!(*code, Some(7), "server {k}: {out}");
        assert!(out.contains(summary), "server {k}: {out}");
        let after = ended.duration_since(failed_at).unwrap_or_default();
        assert!(after < Duration::from_secs(10), "server {k} ended {after:?} after the failure");
    }
    assert!(ends[0]
        .1
        .contains("segzoo-launch: on this server (127.0.0.1): rank 0: exit code 143, rank 1: exit code 143"));
    assert!(ends[1].1.contains("segzoo-launch: on this server (127.0.0.2): rank 2: exit code 143"));
    assert!(ends[0].1.contains("rank 3 on server 127.0.0.2 failed (exit code 7); stopping the local workers"));
    for r in [0, 1, 2] {
        assert!(d.join(format!("term_{r}")).exists(), "rank {r} got no SIGTERM");
    }
}

/// Server 1's workers trap SIGTERM; server 2's write their pid and become `sleep` (exec),
/// so that the pid is the worker the launcher started.
const LEADER_TRAPS_FOLLOWER_SLEEPS: &str = r#"
    if [ "$SERVER_ID" = 127.0.0.2 ]; then echo $$ > pid.tmp_$RANK_ID; mv pid.tmp_$RANK_ID pid_$RANK_ID; exec sleep 60; fi
    trap 'touch term_$RANK_ID; exit 143' TERM
    touch started_$RANK_ID
    sleep 60 & wait"#;

fn follower_pids(d: &Path) -> Vec<i32> {
    [2, 3].iter().map(|r| read(d.join(format!("pid_{r}"))).trim().parse().expect("a pid")).collect()
}

#[test]
fn a_follower_killed_by_sigkill_takes_its_workers_along_and_the_leader_stops_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let [first, second] = start_both(d, &["--heartbeat-timeout", "3"], LEADER_TRAPS_FOLLOWER_SLEEPS);
    wait_for_files(d, &[names("started", [0, 1]), names("pid", [2, 3])].concat());
    let pids = follower_pids(d);
    second.signal(Signal::SIGKILL);
    let killed_at = SystemTime::now();
    let (code, out, ended) = first.wait();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("segzoo-launch: lost server 127.0.0.2 (connection closed); stopping every server"), "{out}");
    assert!(out.contains("segzoo-launch: job failed: lost server 127.0.0.2 (connection closed)\n"), "{out}");
    let after = ended.duration_since(killed_at).unwrap_or_default();
    assert!(after < Duration::from_secs(3 + 5), "took {after:?}");
    assert!(d.join("term_0").exists() && d.join("term_1").exists(), "the leader's workers got no SIGTERM");
    // The parent-death signal: the killed launcher's workers did not run on.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pids.iter().all(|&p| process_gone(p)) {
        assert!(Instant::now() < deadline, "server 2's workers {pids:?} survived their launcher");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = second.wait();
}

#[test]
fn a_silent_follower_is_lost_after_the_heartbeat_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let [first, second] = start_both(d, &["--heartbeat-timeout", "3"], LEADER_TRAPS_FOLLOWER_SLEEPS);
    wait_for_files(d, &[names("started", [0, 1]), names("pid", [2, 3])].concat());
    let pids = follower_pids(d);
    // Stopped, its connection stays open but says nothing.
    second.signal(Signal::SIGSTOP);
    let stopped_at = Instant::now();
    let (code, out, _) = first.wait();
    let after = stopped_at.elapsed();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("segzoo-launch: job failed: lost server 127.0.0.2 (no heartbeat for 3 s)"), "{out}");
    assert!(after >= Duration::from_secs(2) && after < Duration::from_secs(3 + 5), "took {after:?}");
    second.signal(Signal::SIGKILL);
    let _ = second.wait();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pids.iter().all(|&p| process_gone(p)) {
        assert!(Instant::now() < deadline, "server 2's workers {pids:?} survived their launcher");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_follower_that_loses_the_leader_stops_its_workers_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // The leader's workers become `sleep` (exec): killed with their launcher, they leave
    // no child behind.
    let script = r#"
        if [ "$SERVER_ID" = 127.0.0.1 ]; then touch started_$RANK_ID; exec sleep 60; fi
        trap 'touch term_$RANK_ID; exit 143' TERM
        touch started_$RANK_ID
        sleep 60 & wait"#;
    let [first, second] = start_both(d, &["--heartbeat-timeout", "3"], script);
    wait_for_files(d, &names("started", 0..4));
    first.signal(Signal::SIGKILL);
    let (code, out, _) = second.wait();
    assert_eq!(code, Some(1), "{out}");
    let port = out.split("joined the group at 127.0.0.1:").nth(1).and_then(|s| s.lines().next()).expect("joined");
    assert!(
        out.contains(&format!("segzoo-launch: lost the group: connection to the leader at 127.0.0.1:{port} closed")),
        "{out}"
    );
    assert!(d.join("term_2").exists() && d.join("term_3").exists(), "the follower's workers got no SIGTERM");
    let _ = first.wait();
}

#[test]
fn a_failure_with_restarts_left_restarts_every_servers_group_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let script = r#"
        echo "$SEGZOO_LAUNCH_RESTART" >> attempts_$RANK_ID
        if [ "$SEGZOO_LAUNCH_RESTART" = 0 ]; then
          if [ "$RANK_ID" = 2 ]; then
            while [ ! -f attempts_0 ] || [ ! -f attempts_1 ] || [ ! -f attempts_3 ]; do sleep 0.02; done
            exit 3
          fi
          sleep 60 & wait
        fi"#;
    let [first, second] = start_both(d, &["--max-restarts", "1"], script);
    for (k, (code, out, _)) in [first.wait(), second.wait()].into_iter().enumerate() {
        assert_eq!(code, Some(0), "server {k}: {out}");
        assert_eq!(
            out.matches(
                "rank 2 on server 127.0.0.2 failed (exit code 3); starting generation 1: servers 127.0.0.1, 127.0.0.2, \
                 world size 4"
            )
            .count(),
            1,
            "server {k}: {out}"
        );
        assert!(!out.contains("job failed"), "server {k}: {out}");
    }
    for r in 0..4 {
        assert_eq!(read(d.join(format!("attempts_{r}"))), "0\n1\n", "rank {r}");
    }
}

#[test]
fn the_server_holding_rank_0_leads_and_hosts_the_rendezvous_even_when_listed_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let table = write_table(d, true);
    let out = Command::new(LAUNCH)
        .args(["check", "--server-id", "127.0.0.1", "--master-port", "29777", "--rank-table"])
        .arg(&table)
        .output()
        .expect("check runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("[rank 2] ") && text.contains("MASTER_ADDR=127.0.0.2 MASTER_PORT=29777"), "{text}");
    assert!(!text.contains("MASTER_ADDR=127.0.0.1"), "{text}");

    // The second listed server leads the group; every rank is told where the rendezvous is.
    let ports = free_ports();
    let script = r#"echo "$MASTER_ADDR:$MASTER_PORT" > comm_id_$RANK_ID"#;
    let leader = start(d, 1, true, ports, &[], script);
    let follower = start(d, 0, false, ports, &[], script);
    for (code, out, _) in [leader.wait(), follower.wait()] {
        assert_eq!(code, Some(0), "{out}");
    }
    for r in 0..4 {
        assert_eq!(read(d.join(format!("comm_id_{r}"))), format!("127.0.0.2:{}\n", ports.master), "rank {r}");
    }
}

#[test]
fn a_workers_error_file_is_the_summary_on_every_server_and_a_stale_one_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let report = r#"{"rank": 2, "size": 4, "step": null, "kind": "nccl", "message": "all-reduce failed", "chain": ["NCCL error: remote process exited", "connection reset by peer"], "exit_code": 1}"#;
    let fail =
        format!(r#"echo "$SEGZOO_ERROR_FILE" > error_path; printf '%s' '{report}' > "$SEGZOO_ERROR_FILE"; exit 1"#);
    let [first, second] = start_both(d, &[], &fail_once_started(2, &fail));
    let ends = [first.wait(), second.wait()];
    let path = read(d.join("error_path")).trim().to_string();
    assert!(Path::new(&path).is_absolute() && path.ends_with("l2/rank_2.error.json"), "{path}");
    assert_eq!(read(&path), report, "the worker's file is left in place");
    let summary = format!(
        "segzoo-launch: job failed: server 127.0.0.2, rank 2 (device 0) exit code 1\n\
         segzoo-launch: error reported by rank 2 ({path}): all-reduce failed\n\
         \x20   caused by: NCCL error: remote process exited\n\
         \x20   caused by: connection reset by peer\n\
         \x20   (kind nccl)\n"
    );
    for (k, (code, out, _)) in ends.iter().enumerate() {
        assert_eq!(*code, Some(1), "server {k}: {out}");
        assert!(out.contains(&summary), "server {k}: {out}");
    }

    // The same failure without a file: the one left by the run before is not reported.
    std::fs::remove_file(d.join("error_path")).expect("rm");
    for r in 0..4 {
        let _ = std::fs::remove_file(d.join(format!("started_{r}")));
    }
    let [first, second] = start_both(d, &[], &fail_once_started(2, "echo no file this time; exit 1"));
    for (k, (code, out, _)) in [first.wait(), second.wait()].iter().enumerate() {
        assert_eq!(*code, Some(1), "server {k}: {out}");
        assert!(!out.contains("all-reduce failed"), "server {k}: {out}");
        assert!(out.contains("last lines of l2/rank_2.log:\n    no file this time\n"), "server {k}: {out}");
    }
    assert!(!Path::new(&path).exists(), "the stale error file was removed");
}

#[test]
fn a_follower_with_another_table_is_refused_and_exits_2_and_the_leader_gives_up_after_the_join_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write_table(d, false);
    let ports = free_ports();
    // One job key on both: the tables differ, and the leader says how.
    let key = d.join("job.key");
    std::fs::write(&key, "same key").expect("key");
    let key = key.display().to_string();
    let leader = start(d, 0, true, ports, &["--join-timeout", "2", "--job-key-file", &key], "touch started_$RANK_ID");
    // The follower's table lists three ranks on its server.
    let other = d.join("other");
    std::fs::create_dir_all(&other).expect("dir");
    let text = read(d.join("table.json")).replace(
        r#"{"device_id": "1", "rank_id": "3"}"#,
        r#"{"device_id": "1", "rank_id": "3"}, {"device_id": "2", "rank_id": "4"}"#,
    );
    std::fs::write(other.join("table.json"), text).expect("write");
    let follower = start(&other, 1, false, ports, &["--job-key-file", &key], "touch started_$RANK_ID");
    let (code, out, _) = follower.wait();
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(&format!(
            "segzoo-launch: the group leader at 127.0.0.1:{} refused this server: world size 5 in this server's rank table, 4 in the leader's",
            ports.group
        )),
        "{out}"
    );
    let (code, out, _) = leader.wait();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("segzoo-launch: 1 of 2 servers joined"), "{out}");
    assert!(out.contains("segzoo-launch: job failed: not every server joined within 2 s: missing 127.0.0.2"), "{out}");
    assert!(!d.join("started_0").exists() && !other.join("started_2").exists(), "a worker started");
}

#[test]
fn a_group_port_equal_to_the_master_port_is_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let table = write_table(d, false);
    let out = Command::new(LAUNCH)
        .arg("--rank-table")
        .arg(&table)
        .args(["--server-id", "127.0.0.1", "--master-port", "29600", "--group-port", "29600", "--", "touch", "started"])
        .current_dir(d)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("--group-port 29600: the same as --master-port"), "{text}");
    assert!(!d.join("started").exists() && !d.join("logs").exists(), "something started");
}

/// Only members join: a process that speaks the group's protocol without the job key, and
/// the launcher of another job (another table, so another key) claiming server 127.0.0.2,
/// are refused with a line naming their address; the real server 2 then joins and the job
/// finishes normally.
#[test]
fn an_impostor_and_another_jobs_launcher_are_refused_and_the_job_goes_on() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write_table(d, false);
    let ports = free_ports();
    let leader = start(d, 0, true, ports, &[], "touch started_$RANK_ID");
    // The impostor: a hello claiming server 2, then an answer it cannot have computed.
    let mut stream = loop {
        match std::net::TcpStream::connect(("127.0.0.1", ports.group)) {
            Ok(s) => break s,
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let hello = r#"{"Hello":{"server_id":"127.0.0.2","world_size":4,"servers":2,"max_restarts":0,"min_servers":2,"challenge":"00"}}"#;
    writeln!(stream, "{hello}").expect("hello");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("challenge");
    assert!(line.starts_with(r#"{"Challenge":"#), "{line}");
    writeln!(stream, r#"{{"Proof":{{"proof":"{}"}}}}"#, "ab".repeat(32)).expect("proof");
    line.clear();
    reader.read_line(&mut line).expect("answer");
    assert!(line.contains("Refused") && line.contains("did not prove the job key"), "{line}");
    let impostor = stream.local_addr().expect("addr");
    drop(stream);
    // Another job's launcher: its table has other device ips, so another key.
    let other = d.join("other");
    std::fs::create_dir_all(&other).expect("dir");
    let text =
        read(d.join("table.json")).replace(r#""device_id": "0""#, r#""device_id": "0", "device_ip": "10.9.9.9""#);
    std::fs::write(other.join("table.json"), text).expect("write");
    let (code, out, _) = start(&other, 1, false, ports, &[], "touch started_$RANK_ID").wait();
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("refused this server: it did not prove the job key"), "{out}");
    // The real server 2.
    let (code, out, _) = start(d, 1, false, ports, &[], "touch started_$RANK_ID").wait();
    assert_eq!(code, Some(0), "{out}");
    let (code, out, _) = leader.wait();
    assert_eq!(code, Some(0), "{out}");
    let refused = "claiming to be server 127.0.0.2: it did not prove the job key";
    assert!(out.contains(&format!("refused a connection from {impostor} {refused}")), "{out}");
    assert_eq!(out.matches(refused).count(), 2, "the impostor and the other job: {out}");
    for r in 0..4 {
        assert!(d.join(format!("started_{r}")).exists(), "rank {r} ran");
    }
    assert!(!other.join("started_2").exists(), "nothing of the other job ran");
}
