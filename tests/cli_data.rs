//! `segzoo synth`, `make-lists --check` and `bench data` as a user runs them.
use std::process::{Command, Output};

fn segzoo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_segzoo")).args(args).output().expect("segzoo runs")
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn synth_make_lists_check_and_bench() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_str().expect("utf8");
    let text = ok(segzoo(&[
        "synth",
        "cityscapes",
        "--out",
        root,
        "--train",
        "4",
        "--val",
        "2",
        "--size",
        "128x64",
        "--seed",
        "3",
    ]));
    assert!(text.contains("train.lst (4 entries)") && text.contains("val.lst (2 entries)"), "{text}");
    let text = ok(segzoo(&["make-lists", "cityscapes", "--root", root, "--check", "--threads", "2"]));
    assert!(text.contains("check: no problems found"), "{text}");
    assert!(text.contains("road") && text.contains("ignored pixels") && text.contains("class_weights = ["), "{text}");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!("[data]\nroot = {root:?}\ncrop_size = [32, 64]\nbase_size = 128\n\n[train]\nbatch_size = 2\n"),
    )
    .expect("config");
    let text =
        ok(segzoo(&["bench", "data", "--config", cfg.to_str().expect("utf8"), "--threads", "2", "--batches", "3"]));
    assert!(text.contains("3 batches of [2, 3, 32, 64]") && text.contains("img/s"), "{text}");
    // Errors name the problem and exit non-zero.
    let out = segzoo(&["make-lists", "lip", "--root", root]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is this a LIP root?"));
    let out = segzoo(&["synth", "cityscapes", "--out", root, "--size", "128by64"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected WxH"));
}

#[test]
fn relative_roots_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_segzoo")).args(args).current_dir(dir.path()).output().expect("segzoo runs")
    };
    ok(run(&["synth", "cityscapes", "--out", "data/c", "--train", "2", "--val", "1", "--size", "64x32"]));
    let text = ok(run(&["make-lists", "cityscapes", "--root", "data/c", "--check"]));
    assert!(
        text.contains("train: data/c/train.lst (2 entries, 2 read)") && text.contains("no problems found"),
        "{text}"
    );
}

#[test]
fn synth_fixtures_for_every_layout() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (kind, lists) in [("lip", 2), ("voc", 3), ("imagenet", 2)] {
        let root = dir.path().join(kind);
        let root = root.to_str().expect("utf8");
        let text = ok(segzoo(&["synth", kind, "--out", root]));
        assert_eq!(text.lines().count(), lists, "{text}");
        let text = ok(segzoo(&["make-lists", kind, "--root", root, "--check"]));
        assert!(text.contains("no problems found"), "{kind}: {text}");
    }
}
