//! The hub's decisions, without sockets or processes: who starts, stops, restarts and
//! re-forms, the rejoin wait, and the summaries every launcher prints.
use segzoo_launch::cause::JobCause;
use segzoo_launch::hub::{Command, Hub, Out, Report};
use segzoo_launch::worker::End;

fn ids(servers: usize) -> Vec<String> {
    (1..=servers).map(|i| format!("10.0.0.{i}")).collect()
}

fn start_all(servers: &[usize], generation: u32) -> Out {
    servers.iter().map(|&i| (i, Command::Start { generation, members: servers.to_vec() })).collect()
}

fn elastic(servers: usize, max_restarts: u32, min_servers: usize) -> Hub {
    let mut h = Hub::new(ids(servers), vec![2; servers], max_restarts, min_servers);
    assert_eq!(h.start(), start_all(&(0..servers).collect::<Vec<_>>(), 0));
    h
}

fn hub(servers: usize, max_restarts: u32) -> Hub {
    elastic(servers, max_restarts, servers)
}

fn rank_failed(server: usize, rank: usize, code: i32) -> JobCause {
    JobCause::Rank { server: format!("10.0.0.{}", server + 1), rank, device: 0, end: End::Code(code) }
}

fn failed(generation: u32, cause: JobCause) -> Report {
    Report::Failed { generation, cause }
}

fn ended(generation: u32, ok: bool, detail: Option<&str>) -> Report {
    Report::Ended { generation, ok, detail: detail.map(str::to_string), steps: None }
}

fn stop_all(servers: &[usize], generation: u32, cause: &JobCause) -> Out {
    servers.iter().map(|&i| (i, Command::Stop { generation, cause: cause.clone() })).collect()
}

fn finish_all(servers: &[usize], code: u8, summary: &str) -> Out {
    servers.iter().map(|&i| (i, Command::Finish { code, summary: summary.to_string() })).collect()
}

#[test]
fn success_only_when_every_server_ended_ok() {
    let mut h = hub(3, 0);
    assert_eq!(h.report(0, ended(0, true, None)), vec![]);
    assert_eq!(h.report(2, ended(0, true, None)), vec![]);
    // A repeated report counts once.
    assert_eq!(h.report(2, ended(0, true, None)), vec![]);
    assert!(!h.finished());
    assert_eq!(h.report(1, ended(0, true, None)), finish_all(&[0, 1, 2], 0, ""));
    assert!(h.finished());
}

#[test]
fn the_first_failure_wins_and_stops_every_server() {
    let mut h = hub(2, 0);
    let first = rank_failed(1, 3, 7);
    assert_eq!(h.report(1, failed(0, first.clone())), stop_all(&[0, 1], 0, &first));
    // A later failure elsewhere is a consequence: no second stop, not the cause.
    assert_eq!(h.report(0, failed(0, rank_failed(0, 0, 1))), vec![]);
    assert_eq!(h.report(0, ended(0, false, Some("not the root\n"))), vec![]);
    let summary = "segzoo-launch: job failed: server 10.0.0.2, rank 3 (device 0) exit code 7\nlast lines\n";
    assert_eq!(h.report(1, ended(0, false, Some("last lines\n"))), finish_all(&[0, 1], 7, summary));
}

#[test]
fn a_restart_needs_every_server_ended_and_restarts_left() {
    let mut h = hub(2, 1);
    let cause = rank_failed(1, 2, 3);
    h.report(1, failed(0, cause.clone()));
    assert_eq!(h.report(1, ended(0, false, None)), vec![], "server 0 has not ended");
    assert_eq!(h.report(0, ended(0, false, None)), start_all(&[0, 1], 1));
    // Reports of the old generation are stale.
    assert_eq!(h.report(0, failed(0, rank_failed(0, 0, 1))), vec![]);
    assert_eq!(h.report(0, ended(0, false, None)), vec![]);
    // The same failure again: no restarts left.
    assert_eq!(h.report(1, failed(1, cause.clone())), stop_all(&[0, 1], 1, &cause));
    h.report(0, ended(1, false, None));
    let out = h.report(1, ended(1, false, Some("why\n")));
    assert_eq!(out.len(), 2);
    assert!(matches!(&out[0].1, Command::Finish { code: 3, summary } if summary.contains("2 generations")), "{out:?}");
}

#[test]
fn a_generation_that_succeeds_after_a_restart_finishes_0() {
    let mut h = hub(2, 3);
    h.report(0, failed(0, rank_failed(0, 1, 1)));
    h.report(0, ended(0, false, None));
    h.report(1, ended(0, false, None));
    h.report(0, ended(1, true, None));
    let summary = "segzoo-launch: 2 generations:\n\
                   \x20   generation 0: servers 10.0.0.1, 10.0.0.2 (world size 4): rank 1 on server 10.0.0.1 failed (exit code 1)\n\
                   \x20   generation 1: servers 10.0.0.1, 10.0.0.2 (world size 4): finished\n";
    assert_eq!(h.report(1, ended(1, true, None)), finish_all(&[0, 1], 0, summary));
}

#[test]
fn a_lost_server_stops_the_others_and_finishes_non_zero_without_restart() {
    let mut h = hub(3, 5);
    let lost = JobCause::Lost { server: "10.0.0.3".into(), reason: "connection closed".into() };
    assert_eq!(h.lost(2, "connection closed".into()), stop_all(&[0, 1], 0, &lost));
    // Lost once is lost: nothing more for it, even if it is reported again.
    assert_eq!(h.lost(2, "again".into()), vec![]);
    h.report(0, ended(0, false, None));
    let summary = "segzoo-launch: job failed: lost server 10.0.0.3 (connection closed)\n";
    assert_eq!(h.report(1, ended(0, false, None)), finish_all(&[0, 1], 1, summary));
}

#[test]
fn a_server_lost_after_a_failure_prevents_the_restart_and_is_named() {
    let mut h = hub(2, 5);
    h.report(0, failed(0, rank_failed(0, 1, 4)));
    h.report(0, ended(0, false, Some("detail\n")));
    let out = h.lost(1, "no heartbeat for 3 s".into());
    let summary = "segzoo-launch: job failed: server 10.0.0.1, rank 1 (device 0) exit code 4\ndetail\n\
                   segzoo-launch: also lost server 10.0.0.2 (no heartbeat for 3 s)\n";
    assert_eq!(out, finish_all(&[0], 4, summary));
}

#[test]
fn a_signal_anywhere_wins_over_a_failure_and_is_never_restarted() {
    let mut h = hub(2, 5);
    let failure = rank_failed(0, 0, 7);
    assert_eq!(h.report(0, failed(0, failure.clone())), stop_all(&[0, 1], 0, &failure));
    let sig = JobCause::Signal { server: "10.0.0.2".into(), signal: 2 };
    assert_eq!(h.report(1, failed(0, sig.clone())), vec![], "every server is stopping already");
    h.report(0, ended(0, false, None));
    assert_eq!(h.report(1, ended(0, false, None)), finish_all(&[0, 1], 130, &sig.headline(true)));
}

#[test]
fn before_the_start_a_signal_or_a_loss_finishes_at_once_and_the_join_timeout_too() {
    let mut h = Hub::new(vec!["a".into(), "b".into()], vec![1, 1], 0, 2);
    let sig = JobCause::Signal { server: "a".into(), signal: 15 };
    assert_eq!(h.report(0, failed(0, sig.clone())), finish_all(&[0, 1], 143, &sig.headline(true)));
    assert_eq!(h.start(), vec![], "finished jobs do not start");

    let mut h = Hub::new(vec!["a".into(), "b".into()], vec![1, 1], 0, 2);
    let out = h.lost(1, "connection closed".into());
    assert_eq!(out, finish_all(&[0], 1, "segzoo-launch: job failed: lost server b (connection closed)\n"));

    let mut h = Hub::new(vec!["a".into(), "b".into()], vec![1, 1], 0, 2);
    let late = JobCause::NotJoined { missing: vec!["b".into()], waited_ms: 300_000 };
    assert_eq!(h.abandon(late.clone()), finish_all(&[0, 1], 1, &late.headline(true)));
}

#[test]
fn a_lost_server_re_forms_the_job_after_the_rejoin_wait_and_a_returning_one_grows_it() {
    let mut h = elastic(2, 0, 1);
    let lost = JobCause::Lost { server: "10.0.0.2".into(), reason: "connection closed".into() };
    assert_eq!(h.lost(1, "connection closed".into()), stop_all(&[0], 0, &lost));
    let steps = |a, b| Report::Ended { generation: 0, ok: false, detail: None, steps: Some((a, b)) };
    assert_eq!(h.report(0, steps(1, 4)), vec![], "waits for server 2 to come back");
    assert!(h.rejoining());
    assert_eq!(h.awaited(), ["10.0.0.2"]);
    // The wait is over: server 1 alone, generation 1, not a restart.
    assert_eq!(h.rejoin_expired(), start_all(&[0], 1));
    // Server 2's launcher comes back: generation 1 stops for it (a checkpoint), then
    // generation 2 has both.
    assert_eq!(h.may_join(0), Err("server 10.0.0.1 is already in the job".into()));
    assert_eq!(h.may_join(1), Ok(()));
    let joined = JobCause::Joined { server: "10.0.0.2".into() };
    assert_eq!(h.joined(1), stop_all(&[0], 1, &joined));
    let ended = |g, a, b| Report::Ended { generation: g, ok: false, detail: None, steps: Some((a, b)) };
    assert_eq!(h.report(0, ended(1, 4, 7)), start_all(&[0, 1], 2));
    h.report(1, Report::Ended { generation: 2, ok: true, detail: None, steps: Some((8, 10)) });
    let out = h.report(0, Report::Ended { generation: 2, ok: true, detail: None, steps: Some((8, 10)) });
    let summary = "segzoo-launch: 3 generations:\n\
                   \x20   generation 0: servers 10.0.0.1, 10.0.0.2 (world size 4), steps 1-4: lost server 10.0.0.2 (connection closed)\n\
                   \x20   generation 1: server 10.0.0.1 (world size 2), steps 4-7: server 10.0.0.2 joined; re-forming the job with it\n\
                   \x20   generation 2: servers 10.0.0.1, 10.0.0.2 (world size 4), steps 8-10: finished\n";
    assert_eq!(out, finish_all(&[0, 1], 0, summary));
}

#[test]
fn a_server_back_within_the_wait_starts_the_next_generation_at_once_and_too_few_fail() {
    let mut h = elastic(3, 0, 2);
    h.lost(2, "connection closed".into());
    h.report(0, ended(0, false, None));
    h.report(1, ended(0, false, None));
    assert!(h.rejoining());
    assert_eq!(h.joined(2), start_all(&[0, 1, 2], 1));
    // Now two lost while the minimum is 2: one server left.
    h.lost(2, "connection closed".into());
    assert_eq!(h.lost(1, "no heartbeat for 3 s".into()), vec![], "server 1 has not ended");
    let out = h.report(0, ended(1, false, None));
    let Some((0, Command::Finish { code: 1, summary })) = out.first() else { panic!("{out:?}") };
    assert!(summary.starts_with("segzoo-launch: job failed: lost server 10.0.0.3 (connection closed)\n"), "{summary}");
    assert!(summary.contains("1 of 3 servers remain, fewer than --min-servers 2"), "{summary}");
}

#[test]
fn one_server_keeps_the_launchers_historical_summary() {
    let mut h = hub(1, 0);
    let cause = JobCause::Rank { server: "127.0.0.1".into(), rank: 3, device: 3, end: End::Code(7) };
    h.report(0, failed(0, cause));
    let out = h.report(0, ended(0, false, Some("segzoo-launch: last lines of lg/rank_3.log:\n    boom\n")));
    let summary = "segzoo-launch: job failed: rank 3 (device 3) exit code 7\nsegzoo-launch: last lines of lg/rank_3.log:\n    boom\n";
    assert_eq!(out, finish_all(&[0], 7, summary));
}
