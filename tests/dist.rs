//! Data-parallel training and evaluation over MPI on the CPU, as a user runs them:
//! `mpirun -n N segzoo …` against the same run in one process (MPI, the CPU default under
//! mpirun, and gloo through the rendezvous MPI carries).
#[path = "common/jobs.rs"]
mod jobs;

use jobs::{assert_trains_alike, evals, losses, max_diff, max_rel_diff, mpirun, ok, segzoo, setup, step_weights, BIN};
use std::path::Path;
use std::process::Command;
use tch::Tensor;

#[test]
fn two_ranks_train_exactly_like_one_process_over_the_same_global_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup(d);
    let common = ["train", "--config", "c.toml", "--max-steps", "3"];
    ok(segzoo(d, &[&common[..], &["--set", "train.batch_size=4", "--set", "train.output_dir=one"]].concat()));
    let text =
        ok(mpirun(d, 2, &[&common[..], &["--set", "train.batch_size=2", "--set", "train.output_dir=two"]].concat()));
    assert!(
        text.contains("data parallel over 2 ranks (mpi backend): global batch 4 (accumulation 1), 2 steps per epoch"),
        "{text}"
    );
    assert!(text.contains("rank 0/2") && text.contains("rank 1/2"), "every log line names its rank: {text}");
    // Rank 0 alone logs steps and writes: one line per step, not two.
    assert_eq!(text.matches("] step ").count(), 3, "{text}");
    let (one, two) = (d.join("one"), d.join("two"));
    let (l1, l2) = (losses(&one), losses(&two));
    assert_eq!(l1.len(), 3);
    assert_eq!(l2.len(), 3, "metrics.jsonl is written by rank 0 alone");
    // Relative: one f32 ulp of a loss of 131.8 is 1.5e-5, and the two runs sum in
    // different orders (one batch of 4 vs two of 2).
    for (a, b) in l1.iter().zip(&l2) {
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "losses {l1:?} vs {l2:?}");
    }
    let ck = step_weights;
    let diff = max_diff(&ck(&one, 3), &ck(&two, 3));
    assert!(diff <= 1e-5, "parameters after 3 steps differ by {diff}");
    // And the steps did move the weights, so the equality means something.
    assert!(max_diff(&ck(&two, 1), &ck(&two, 3)) > 1e-3);
    // The epoch-1 evaluation ran sharded and agrees with the single process's.
    let evals = |run: &Path| -> Vec<f64> {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .expect("metrics")
            .lines()
            .filter(|l| l.contains("\"eval\""))
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["pixel_acc"].as_f64().expect("acc"))
            .collect()
    };
    let (e1, e2) = (evals(&one), evals(&two));
    assert_eq!(e1.len(), 1);
    assert!((e1[0] - e2[0]).abs() < 1e-6, "{e1:?} vs {e2:?}");
}

/// The confusion matrix of `segzoo eval` on `ranks` ranks (1: no mpirun).
fn confusion(d: &Path, ranks: usize, val_list: &str, ckpt: &str) -> serde_json::Value {
    let out = format!("eval_{ranks}_{val_list}.json");
    let set = format!("data.val_list={val_list}");
    let args = ["eval", "--config", "c.toml", "--checkpoint", ckpt, "--set", &set, "--json", &out];
    let text = ok(if ranks == 1 { segzoo(d, &args) } else { mpirun(d, ranks, &args) });
    let n = std::fs::read_to_string(d.join("data").join(val_list)).expect("list").lines().count();
    assert!(text.contains(&format!("evaluated {n} images")), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join(&out)).expect("json")).expect("json");
    v["confusion"].clone()
}

#[test]
fn sharded_evaluation_counts_every_image_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup(d);
    ok(segzoo(d, &["train", "--config", "c.toml", "--max-steps", "1", "--set", "train.batch_size=2"]));
    let ckpt = "runs/default/checkpoints/ckpt_step_00000001.safetensors";
    assert!(d.join(ckpt).exists(), "default output_dir is runs/default");
    // 5 images on 2 ranks and 8 on 3: shards of unequal size.
    let val: Vec<String> =
        std::fs::read_to_string(d.join("data/val.lst")).expect("val list").lines().map(String::from).collect();
    assert_eq!(val.len(), 8);
    std::fs::write(d.join("data/val5.lst"), val[..5].join("\n") + "\n").expect("list");
    let single = confusion(d, 1, "val5.lst", ckpt);
    let total: i64 = single
        .as_array()
        .expect("rows")
        .iter()
        .flat_map(|row| row.as_array().expect("row").iter().map(|v| v.as_i64().expect("count")))
        .sum();
    assert_eq!(total, 5 * 32 * 32, "every pixel of the 5 images, none twice");
    assert_eq!(confusion(d, 2, "val5.lst", ckpt), single);
    assert_eq!(confusion(d, 3, "val.lst", ckpt), confusion(d, 1, "val.lst", ckpt));
}

#[test]
fn a_failing_rank_stops_the_job_and_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup(d);
    ok(segzoo(d, &["train", "--config", "c.toml", "--max-steps", "1", "--set", "train.batch_size=2"]));
    // Rank 1 evaluates images 1 and 3; the second image of the list is corrupt.
    let val = std::fs::read_to_string(d.join("data/val.lst")).expect("val list");
    let image = val.lines().nth(1).expect("second line").split_whitespace().next().expect("image").to_string();
    std::fs::write(d.join("data").join(&image), b"not an image").expect("corrupt");
    let out = mpirun(
        d,
        2,
        &["eval", "--config", "c.toml", "--checkpoint", "runs/default/checkpoints/ckpt_step_00000001.safetensors"],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("error: rank 1/2 failed"), "{text}");
    let name = Path::new(&image).file_name().expect("name").to_string_lossy().into_owned();
    assert!(text.contains(&name), "the corrupt file is named: {text}");
    assert!(!text.contains("rank 0/2 failed"), "{text}");
}

#[test]
fn impossible_backends_are_refused_with_the_way_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup(d);
    // Workers of segzoo-launch have no MPI world to join.
    let out = Command::new(BIN)
        .args(["train", "--config", "c.toml", "--device", "cpu", "--set", "dist.backend=mpi"])
        .env("RANK_ID", "1")
        .env("RANK_SIZE", "2")
        .current_dir(d)
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("error: rank 1/2:") && err.contains("started by segzoo-launch, not mpirun"), "{err}");
    // NCCL here: this CPU build has none (the CUDA build: the device is wrong).
    let out = segzoo(d, &["train", "--config", "c.toml", "--device", "cpu", "--set", "dist.backend=nccl"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("needs the CUDA build of segzoo") || err.contains("NCCL needs a CUDA device"), "{err}");
    // More ranks than a "single" backend can serve.
    let out = mpirun(d, 2, &["dist-check", "--backend", "single", "--mib", "0.1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("dist.backend = \"single\" but rank"));
}

/// Both CPU backends under mpirun: MPI itself, and gloo meeting at a rendezvous whose
/// address rank 0 sends over MPI.
#[test]
fn every_collective_checks_out_on_two_ranks_over_mpi_and_over_gloo() {
    let dir = tempfile::tempdir().expect("tempdir");
    for backend in ["mpi", "gloo"] {
        let text = ok(mpirun(dir.path(), 2, &["dist-check", "--mib", "1", "--iters", "2", "--backend", backend]));
        for r in 0..2 {
            assert!(
                text.contains(&format!(
                    "rank {r}/2 (mpirun, local rank {r}) on cpu: {backend} collectives ok for Float, Double, BFloat16, \
                     Half, Int64, Int, Uint8"
                )),
                "{text}"
            );
        }
        assert!(text.contains("all-reduce of 1.0 MiB f32 over 2 rank(s)"), "{text}");
    }
}

/// `train.accumulate_steps = 2` × batch 2 takes the optimiser steps of batch 4 (frozen BN,
/// no ignored pixels): alone and on 2 ranks, parameters equal to 1e-5 after 3 steps.
#[test]
fn accumulating_two_batches_of_2_steps_like_batch_4_alone_and_on_2_ranks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup(d);
    let common =
        ["train", "--config", "c.toml", "--max-steps", "3", "--set", "eval.start=99", "--set", "train.epochs=5"];
    let run = |ranks: usize, extra: &[&str]| {
        let args = [&common[..], extra].concat();
        if ranks == 1 {
            ok(segzoo(d, &args))
        } else {
            ok(mpirun(d, ranks, &args))
        }
    };
    run(1, &["--set", "train.batch_size=4", "--set", "train.output_dir=b4"]);
    let text =
        run(1, &["--set", "train.batch_size=2", "--set", "train.accumulate_steps=2", "--set", "train.output_dir=a2"]);
    assert!(text.contains("trained 3 steps"), "optimiser steps are counted: {text}");
    run(2, &["--set", "train.batch_size=4", "--set", "train.output_dir=b4x2"]);
    run(2, &["--set", "train.batch_size=2", "--set", "train.accumulate_steps=2", "--set", "train.output_dir=a2x2"]);
    for (plain, accumulated) in [("b4", "a2"), ("b4x2", "a2x2")] {
        let (p, a) = (step_weights(&d.join(plain), 3), step_weights(&d.join(accumulated), 3));
        let diff = max_diff(&p, &a);
        assert!(diff <= 1e-5, "{plain} vs {accumulated}: parameters differ by {diff}");
        let moved = max_diff(&p, &step_weights(&d.join(plain), 1));
        assert!(moved > 1e-4, "{plain}: weights moved only {moved}");
        // Logged and checkpointed per optimiser step.
        assert_eq!(losses(&d.join(accumulated)).len(), 3, "{accumulated}");
    }
}

/// With accumulation, 1 step + stop + resume for 2 more equals 3 steps straight, bit for bit.
#[test]
fn resume_with_accumulation_is_bit_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup(d);
    let common = ["train", "--config", "c.toml", "--set", "train.batch_size=2", "--set", "train.accumulate_steps=2"];
    let common = [&common[..], &["--set", "eval.start=99"]].concat();
    ok(segzoo(d, &[&common[..], &["--max-steps", "3", "--set", "train.output_dir=straight"]].concat()));
    ok(segzoo(d, &[&common[..], &["--max-steps", "1", "--set", "train.output_dir=resumed"]].concat()));
    let text = ok(segzoo(
        d,
        &[&common[..], &["--max-steps", "3", "--resume", "auto", "--set", "train.output_dir=resumed"]].concat(),
    ));
    assert!(text.contains("resumed from") && text.contains("at step 1"), "{text}");
    let (a, b) = (step_weights(&d.join("straight"), 3), step_weights(&d.join("resumed"), 3));
    assert_eq!(a.len(), b.len());
    for (name, t) in &a {
        assert!(t.equal(&b[name]), "{name} differs after resume");
    }
}

/// SyncBatchNorm (`model.sync_bn`, BN in training mode): 2 ranks × batch 2 take the steps of
/// one process × batch 4 with plain BN, and the checkpoint loads into `forward` built
/// without sync_bn. 128×128 images keep the coarsest branch at 4×4, and a small learning
/// rate keeps the three steps from amplifying rounding. Measured: per-step losses within
/// 5e-6 and parameters within 4e-7 (relative). BN running statistics are held to 1e-4: the
/// running variance of the BN after the coarsest branch's fuse conv differs by 2.4e-6
/// already at step 1, from identical weights, and by 2.4e-5 after 3 steps. The same
/// synchronized code run in one process shows the same gap to plain BN, so it comes from
/// two BN kernels rounding one ill-conditioned variance, not from the cross-rank sums.
#[test]
fn sync_bn_on_2_ranks_trains_like_plain_bn_on_the_whole_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup(d);
    ok(segzoo(d, &["synth", "lip", "--out", "data128", "--n", "8", "--size", "128x128"]));
    let common =
        ["train", "--config", "c.toml", "--max-steps", "3", "--set", "eval.start=99", "--set", "train.epochs=5"];
    let tiny = ["--set", "data.root=data128", "--set", "data.crop_size=[128,128]", "--set", "train.lr=1e-6"];
    let common = [&common[..], &tiny[..], &["--set", "model.freeze_bn=false"]].concat();
    ok(segzoo(d, &[&common[..], &["--set", "train.batch_size=4", "--set", "train.output_dir=plain"]].concat()));
    let text = ok(mpirun(
        d,
        2,
        &[
            &common[..],
            &["--set", "train.batch_size=2", "--set", "model.sync_bn=true", "--set", "train.output_dir=sync"],
        ]
        .concat(),
    ));
    assert!(text.contains("SyncBatchNorm: batch statistics over 2 ranks"), "{text}");
    let (p, params, stats) = assert_trains_alike(&d.join("plain"), &d.join("sync"), 3);
    let moved = max_rel_diff(&p, &step_weights(&d.join("plain"), 1), |n| !n.contains(".running_"));
    assert!(moved > 10.0 * params, "weights moved {moved}, not clearly more than the difference {params}");
    // Per-rank BN (no sync) does not: its batch statistics are over 2 images, not 4.
    ok(mpirun(d, 2, &[&common[..], &["--set", "train.batch_size=2", "--set", "train.output_dir=local"]].concat()));
    let local = max_rel_diff(&p, &step_weights(&d.join("local"), 3), |n| n.contains(".running_"));
    assert!(local > 100.0 * stats, "per-rank BN statistics should differ from the whole batch's: {local} vs {stats}");
    // Trained with sync_bn, loaded strictly by a build without it.
    let x = Tensor::randn([1, 3, 32, 32], (tch::Kind::Float, tch::Device::Cpu));
    Tensor::write_safetensors(&[("input", &x)], d.join("x.safetensors")).expect("input");
    let ckpt = "sync/checkpoints/ckpt_step_00000003.safetensors";
    let forward =
        ["forward", "--model", "c.toml", "--weights", ckpt, "--input", "x.safetensors", "--output", "y.safetensors"];
    ok(segzoo(d, &forward));
}

/// SyncBatchNorm on 3 ranks × batch 2 against one process × batch 6 (9 images: the same six
/// per step), with evaluation every epoch over a val list that leaves each rank's last
/// batch short (3 images per rank, eval batch 2): same bounds as on 2 ranks, same mIoU. The
/// learning rate is 1e-7 here: with batch 6 the third step amplifies rounding further
/// (at 1e-6, losses differed by 4.5e-5 at step 3).
#[test]
fn sync_bn_on_3_ranks_trains_and_evaluates_like_one_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup(d);
    ok(segzoo(d, &["synth", "lip", "--out", "data9", "--n", "9", "--size", "128x128"]));
    let common =
        ["train", "--config", "c.toml", "--max-steps", "3", "--set", "eval.start=1", "--set", "eval.batch_size=2"];
    let tiny = ["--set", "data.root=data9", "--set", "data.crop_size=[128,128]", "--set", "train.lr=1e-7"];
    let common = [&common[..], &tiny[..], &["--set", "model.freeze_bn=false", "--set", "train.epochs=3"]].concat();
    ok(segzoo(d, &[&common[..], &["--set", "train.batch_size=6", "--set", "train.output_dir=plain"]].concat()));
    ok(mpirun(
        d,
        3,
        &[
            &common[..],
            &["--set", "train.batch_size=2", "--set", "model.sync_bn=true", "--set", "train.output_dir=sync"],
        ]
        .concat(),
    ));
    assert_trains_alike(&d.join("plain"), &d.join("sync"), 3);
    let (ep, es) = (evals(&d.join("plain")), evals(&d.join("sync")));
    // After epochs 1 and 2; --max-steps 3 ends the run at the third step, before its evaluation.
    assert_eq!((ep.len(), es.len()), (2, 2), "an evaluation per completed epoch");
    for (a, b) in ep.iter().zip(&es) {
        assert!((a - b).abs() < 1e-4, "mIoU {ep:?} vs {es:?}");
    }
}

/// `dist.overlap` (each bucket all-reduced on MPI's background thread as soon as backward
/// has produced it) against the after-backward path: bit-identical weights after 3 steps on
/// 2 ranks, for BiSeNetV2 whose four aux heads are left out of the loss (their parameters
/// get no gradient: their buckets go after backward, as zeros) and for HRNet with SyncBN
/// running its collectives on the main communicator meanwhile. Small buckets: many of them.
#[test]
fn overlapped_all_reduce_equals_the_after_backward_path_bit_for_bit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup(d);
    ok(segzoo(d, &["synth", "lip", "--out", "data64", "--n", "8", "--size", "64x64"]));
    let common =
        ["train", "--config", "c.toml", "--max-steps", "3", "--set", "eval.start=99", "--set", "train.epochs=5"];
    let common =
        [&common[..], &["--set", "data.root=data64", "--set", "data.crop_size=[64,64]", "--set", "train.batch_size=2"]]
            .concat();
    let bisenet = ["--set", "model.name=bisenetv2", "--set", "model.freeze_bn=false", "--set", "dist.bucket_mb=1"];
    let bisenet = [&bisenet[..], &["--set", "train.loss.head_weights=[1.0,0.0,0.0,0.0,0.0]"]].concat();
    let hrnet = ["--set", "model.freeze_bn=false", "--set", "model.sync_bn=true", "--set", "dist.bucket_mb=0.5"];
    for (name, model) in [("bisenet", &bisenet[..]), ("hrnet_syncbn", &hrnet[..])] {
        let run = |overlap: bool| {
            let out = format!("{name}_{overlap}");
            let set = format!("dist.overlap={overlap}");
            let text = ok(mpirun(
                d,
                2,
                &[&common[..], model, &["--set", &set, "--set", &format!("train.output_dir={out}")]].concat(),
            ));
            assert_eq!(text.contains("gradient all-reduce overlapped with backward"), overlap, "{name}: {text}");
            (step_weights(&d.join(out), 3), text)
        };
        let ((on, text), (off, _)) = (run(true), run(false));
        // Every parameter of HRNet gets a gradient: every bucket starts during backward.
        // BiSeNetV2's unused aux heads are registered last, so they sit in the first bucket,
        // which holds back the later ones until backward ends.
        let started = text.split("overlap: ").nth(1).and_then(|t| t.split(" gradient buckets").next()).unwrap_or("");
        let (early, all) = started.split_once(" of ").expect("the overlap line");
        let (early, all): (usize, usize) = (early.parse().expect("count"), all.parse().expect("count"));
        assert!(all > 1, "{name}: several buckets");
        assert_eq!(early, if name == "bisenet" { 0 } else { all }, "{name}: buckets started during backward");
        assert_eq!(on.len(), off.len());
        for (n, t) in &on {
            assert!(t.equal(&off[n]), "{name}: {n} differs between overlap on and off");
        }
        let moved = max_diff(&on, &step_weights(&d.join(format!("{name}_true")), 1));
        assert!(moved > 0.0, "{name}: weights did not move");
    }
}

/// `segzoo bench train` under mpirun reports the gradient communication left exposed after
/// backward, with overlap on and off.
#[test]
fn bench_train_under_mpirun_reports_exposed_communication() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup(d);
    for overlap in [true, false] {
        let set = format!("dist.overlap={overlap}");
        let text = ok(mpirun(d, 2, &["bench", "train", "--config", "c.toml", "--steps", "2", "--set", &set]));
        let how = if overlap { "overlapped with backward" } else { "after backward" };
        let line = text
            .lines()
            .find(|l| l.starts_with("gradient all-reduce over 2 ranks (mpi backend, "))
            .unwrap_or_else(|| panic!("no communication line: {text}"));
        assert!(line.contains(how), "{line}");
        let ms: f64 =
            line.split("): ").nth(1).and_then(|t| t.split(' ').next()).and_then(|v| v.parse().ok()).expect("ms");
        assert!(ms >= 0.0 && ms.is_finite(), "{line}");
        assert_eq!(text.matches("bench train: ").count(), 1, "rank 0 alone reports: {text}");
    }
}
