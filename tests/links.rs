//! Two servers joined by a real link: network namespaces with addresses of their own
//! (tests/common/netns.rs), a segzoo-launch in each. A two-host job trains like one process;
//! the follower's link cut mid-run (its process alive) is named by the leader within the
//! heartbeat timeout and survived with `--min-servers 1` on the same trajectory, the
//! follower ending with exit 1 naming the leader; a 2-second outage, shorter than the
//! heartbeat timeout, changes nothing. Skipped, saying why, where namespaces cannot be made.
#[path = "common/jobs.rs"]
mod jobs;
#[path = "common/netns.rs"]
mod netns;

use jobs::{
    assert_trains_alike, launcher, max_rel_diff, ok, segzoo, step_weights, steps_done, wait_for, wait_with_deadline,
    BIN,
};
use netns::Hosts;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

fn hosts() -> Option<Hosts> {
    match Hosts::new(2) {
        Ok(h) => Some(h),
        Err(why) => {
            eprintln!("skipped: network namespaces cannot be made here: {why}");
            None
        }
    }
}

/// The launcher of host `i` (server `addrs[i]` of t.json) with `opts`, running `worker`;
/// its output in `<log>.out`.
fn launch(h: &Hosts, d: &Path, i: usize, log: &str, opts: &[&str], worker: &[String]) -> Child {
    let out = std::fs::File::create(d.join(format!("{log}.out"))).expect("output file");
    h.command(i, launcher())
        .args(["--rank-table", "t.json", "--server-id", &h.addrs[i], "--log-dir", log, "--join-timeout", "60"])
        .args(["--master-port", "29510", "--group-port", "29511", "--grace-period", "3", "--console", "none"])
        .args(opts)
        .arg("--")
        .arg(BIN)
        .args(worker)
        .current_dir(d)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .spawn()
        .expect("segzoo-launch in a namespace")
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref()).unwrap_or_default()
}

fn worker(out: &str, extra: &[&str]) -> Vec<String> {
    let base = ["train", "--config", "c.toml", "--resume", "auto", "--set", "train.checkpoint_steps=1"];
    let mut v: Vec<String> = base.iter().chain(extra).map(|s| s.to_string()).collect();
    v.extend(["--set".to_string(), format!("train.output_dir={out}")]);
    v
}

/// Both launchers to the end; their outputs.
fn finish(a: &mut Child, b: &mut Child, d: &Path, logs: [&str; 2]) -> [(Option<i32>, String); 2] {
    let sa = wait_with_deadline(a, Duration::from_secs(600));
    let sb = wait_with_deadline(b, Duration::from_secs(600));
    [(sa.code(), read(d.join(format!("{}.out", logs[0])))), (sb.code(), read(d.join(format!("{}.out", logs[1]))))]
}

#[test]
fn two_hosts_on_a_real_link_train_like_one_process() {
    let Some(h) = hosts() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    jobs::setup(d);
    std::fs::write(d.join("t.json"), jobs::rank_table(&[h.addrs[0].as_str(), h.addrs[1].as_str()], 1)).expect("table");
    let steps = ["--max-steps", "3", "--set", "train.epochs=5"];
    ok(segzoo(
        d,
        &[
            &worker("plain", &steps).iter().map(String::as_str).collect::<Vec<_>>()[..],
            &["--set", "train.batch_size=4"],
        ]
        .concat(),
    ));
    let w = worker("two", &[&steps[..], &["--set", "train.batch_size=2"]].concat());
    let (mut a, mut b) = (launch(&h, d, 0, "a", &[], &w), launch(&h, d, 1, "b", &[], &w));
    let [(ca, oa), (cb, ob)] = finish(&mut a, &mut b, d, ["a", "b"]);
    assert_eq!((ca, cb), (Some(0), Some(0)), "{oa}\n{ob}");
    let log = read(d.join("a/rank_0.log"));
    assert!(log.contains("data parallel over 2 ranks (gloo backend)"), "{log}");
    assert_trains_alike(&d.join("plain"), &d.join("two"), 3);
}

/// The elastic job of both tests: 8 steps of a global batch of 4 (accumulation 2 alone).
fn elastic(out: &str) -> Vec<String> {
    worker(out, &["--set", "train.global_batch=4", "--set", "train.batch_size=2", "--set", "train.epochs=4"])
}

#[test]
fn a_cut_follower_link_is_survived_by_the_leader_alone_on_the_same_trajectory() {
    let Some(h) = hosts() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    jobs::setup(d);
    std::fs::write(d.join("t.json"), jobs::rank_table(&[h.addrs[0].as_str(), h.addrs[1].as_str()], 1)).expect("table");
    std::fs::write(d.join("one.json"), jobs::rank_table(&[h.addrs[0].as_str()], 2)).expect("table");
    // The uninterrupted run: the same two ranks on one host.
    let out = h
        .command(0, launcher())
        .args(["--rank-table", "one.json", "--server-id", &h.addrs[0], "--log-dir", "lg", "--", BIN])
        .args(elastic("straight"))
        .current_dir(d)
        .output()
        .expect("segzoo-launch");
    assert!(out.status.success(), "{}", jobs::text(&out));
    let opts = ["--min-servers", "1", "--rejoin-timeout", "1", "--heartbeat-timeout", "3"];
    let w = elastic("cut");
    let (mut a, mut b) = (launch(&h, d, 0, "a", &opts, &w), launch(&h, d, 1, "b", &opts, &w));
    wait_for(Duration::from_secs(300), "two steps", || steps_done(&d.join("cut")) >= 2);
    h.cut(1);
    let [(ca, oa), (cb, ob)] = finish(&mut a, &mut b, d, ["a", "b"]);
    assert_eq!(ca, Some(0), "the leader finishes alone:\n{oa}");
    assert!(oa.contains(&format!("lost server {}", h.addrs[1])), "the leader names the lost server:\n{oa}");
    assert!(oa.contains(&format!("generation 1: server {} (world size 1)", h.addrs[0])), "{oa}");
    assert_eq!(cb, Some(1), "the follower ends with exit 1:\n{ob}");
    assert!(ob.contains(&h.addrs[0]), "the follower names the leader:\n{ob}");
    let log = read(d.join("a/rank_0.log"));
    assert!(log.contains("global batch 4 (accumulation 2)"), "alone, with accumulation: {log}");
    let (s, c) = (step_weights(&d.join("straight"), 8), step_weights(&d.join("cut"), 8));
    let diff = max_rel_diff(&s, &c, |_| true);
    assert!(diff <= 1e-5, "the cut run ends {diff} (relative) from the uninterrupted one");
}

#[test]
fn a_two_second_outage_shorter_than_the_heartbeat_timeout_changes_nothing() {
    let Some(h) = hosts() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    jobs::setup(d);
    std::fs::write(d.join("t.json"), jobs::rank_table(&[h.addrs[0].as_str(), h.addrs[1].as_str()], 1)).expect("table");
    let opts = ["--heartbeat-timeout", "10"];
    let run = |out: &str, outage: bool| {
        let w = elastic(out);
        let (la, lb) = (format!("{out}_a"), format!("{out}_b"));
        let (mut a, mut b) = (launch(&h, d, 0, &la, &opts, &w), launch(&h, d, 1, &lb, &opts, &w));
        if outage {
            wait_for(Duration::from_secs(300), "three steps", || steps_done(&d.join(out)) >= 3);
            h.cut(1);
            std::thread::sleep(Duration::from_secs(2));
            h.restore(1);
        }
        let [(ca, oa), (cb, ob)] = finish(&mut a, &mut b, d, [&la, &lb]);
        assert_eq!((ca, cb), (Some(0), Some(0)), "{oa}\n{ob}");
        assert!(!oa.contains("lost server") && !oa.contains("generation 1"), "one generation throughout: {oa}");
    };
    run("steady", false);
    run("outage", true);
    let (s, o) = (step_weights(&d.join("steady"), 8), step_weights(&d.join("outage"), 8));
    for (name, t) in &s {
        assert!(t.equal(&o[name]), "{name} differs after the outage");
    }
}
