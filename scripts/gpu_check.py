#!/usr/bin/env python3
"""The one check of segzoo's GPU path (scripts/gpu_check.sh runs it; docs/installation.md).

On one GPU it exercises the multi-rank code too (two ranks share the GPU over gloo; one
NCCL rank runs the overlap, SyncBN and the fp16 scaler), measures HRNetV2-W48 against
PyTorch eager on the same GPU (scripts/torch_peer.py), prints a table, writes it as JSON
to --out, and exits 1 at the first wrong result. With --cpu every step runs on the CPU
(gloo for NCCL, small models and images), so that scripts/test.sh keeps the script
working. Standard library only: the GPU machines have python3 and PyTorch, nothing else.
"""
import argparse
import array
import json
import math
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
W48_PARAMS = 65_859_379
# A small HRNet on LIP-layout images: BN frozen, so 2 ranks × batch 2 take the steps of
# one process × batch 4 up to summation order (tests/common/jobs.rs).
TINY = """
[model]
name = "hrnetv2_w18_small_v1"
freeze_bn = true

[data]
dataset = "lip"
root = "lip"
crop_size = [64, 64]
scale_range = [1.0, 1.0]
flip = true
num_workers = 1

[train]
epochs = 5
optimizer = "sgd"
lr = 1e-4
momentum = 0.9
weight_decay = 1e-4
checkpoint_steps = 1
keep_checkpoints = 10
cudnn_benchmark = false

[eval]
start = 99

[log]
interval = 1
"""


class Failed(Exception):
    pass


class Check:
    def __init__(self, args):
        self.args = args
        self.cpu = args.cpu
        self.out = os.path.abspath(args.out or tempfile.mkdtemp(prefix="gpu_check_"))
        self.work = os.path.join(self.out, "work")
        self.logs = os.path.join(self.out, "logs")
        for d in (self.work, self.logs):
            # A fresh start: runs left by an earlier check would be resumed or appended to.
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
        bin_dir = args.bin or next(
            (d for d in (os.path.join(ROOT, "bin"), os.path.join(ROOT, "target", "release")) if os.path.isdir(d)),
            os.path.join(ROOT, "target", "release"),
        )
        bin_dir = os.path.abspath(bin_dir)
        self.segzoo = os.path.join(bin_dir, "segzoo")
        self.launch_bin = os.path.join(bin_dir, "segzoo-launch")
        self.device = "cpu" if self.cpu else "cuda:0"
        self.rows = []
        self.started = time.time()
        self.env = {}
        self.contexts = None

    # ---- running things ---------------------------------------------------------------
    def run(self, name, cmd, timeout=300, env=None, given="0"):
        """Runs `cmd` in the work folder, stdout and stderr into logs/NAME.log (stdout alone
        into logs/NAME.out); a failure ends the check naming the log."""
        log = os.path.join(self.logs, name + ".log")
        full_env = dict(os.environ, SEGZOO_CHECK_GIVEN=given, **(env or {}))
        with open(log, "w") as err:
            try:
                p = subprocess.run(cmd, cwd=self.work, stdout=subprocess.PIPE, stderr=err, env=full_env,
                                   timeout=timeout, text=True)
            except subprocess.TimeoutExpired:
                raise Failed(f"{name}: no result within {timeout} s (log: {log})")
        with open(os.path.join(self.logs, name + ".out"), "w") as f:
            f.write(p.stdout)
        if p.returncode != 0:
            tail = "".join(open(log).readlines()[-25:])
            raise Failed(f"{name}: exit {p.returncode}: {' '.join(cmd)}\n{p.stdout[-2000:]}{tail}(log: {log})")
        return p.stdout

    def launch(self, name, table, worker, timeout=300, given="0"):
        """`worker` (segzoo's arguments) under segzoo-launch with `table`; the text of the
        launcher's output and every rank's log."""
        log_dir = os.path.join(self.logs, name)
        cmd = [self.launch_bin, "--rank-table", table, "--server-id", "127.0.0.1", "--log-dir", log_dir,
               "--master-port", str(free_port()), "--", self.segzoo] + worker
        out = self.run(name, cmd, timeout=timeout, given=given)
        for f in sorted(os.listdir(log_dir)) if os.path.isdir(log_dir) else []:
            if f.endswith(".log"):
                out += open(os.path.join(log_dir, f)).read()
        return out + open(os.path.join(self.logs, name + ".log")).read()

    def row(self, check, result, ok=True, **figures):
        self.rows.append({"check": check, "result": result, "ok": ok, "figures": figures})
        print(f"gpu_check: {check}: {result}", flush=True)

    def set(self, *pairs):
        return [a for p in pairs for a in ("--set", p)]

    # ---- the steps --------------------------------------------------------------------
    def environment(self):
        for b in (self.segzoo, self.launch_bin):
            if not os.access(b, os.X_OK):
                raise Failed(f"no binary {b}: build with cargo build --release, or give --bin DIR")
        # stdout only: a warning on stderr must not break the JSON (finding 10).
        env = json.loads(self.run("env", [self.segzoo, "env", "--json"]))
        self.env = env
        if self.cpu:
            self.row("environment", f"{env['torch_flavour']} build of libtorch {env['libtorch_version']}, "
                     f"{env['torch_threads']} threads, --cpu: every step on the CPU", env=env)
            return
        if env["torch_flavour"] != "cuda":
            raise Failed("not the CUDA build (SEGZOO_TORCH=cuda scripts/setup.sh, or the bundle of scripts/gpu_bundle.sh)")
        if not env["cuda_available"] or env["cuda_device_count"] < 1:
            raise Failed("CUDA is not available to segzoo (segzoo env: " + json.dumps(env)[:400] + ")")
        if not env["nccl"]["version"]:
            raise Failed(f"NCCL not found: {env['nccl']['detail']}")
        self.row("environment", f"{env['cuda_device_count']} × {env['cuda_devices'][0]}, NCCL {env['nccl']['version']}, "
                 f"cuDNN {'yes' if env['cudnn_available'] else 'no'}, libtorch {env['libtorch_version']}", env=env)

    def tables(self):
        self.t1, self.t2 = os.path.join(self.work, "t1.json"), os.path.join(self.work, "t2.json")
        self.run("table1", [self.launch_bin, "gen-table", "--server-id", "127.0.0.1", "--devices", "0", "-o", self.t1])
        self.run("table2", [self.launch_bin, "gen-table", "--server-id", "127.0.0.1", "--devices", "0-1", "-o", self.t2])

    def collectives(self):
        ok = "collectives ok for Float, Double, BFloat16, Half, Int64, Int, Uint8"
        backend = "gloo" if self.cpu else "nccl"
        mib = ["--mib", "4", "--iters", "3"] if self.cpu else ["--mib", "256", "--iters", "20"]
        text = self.launch(f"collectives_{backend}_1", self.t1, ["dist-check", "--backend", backend, "--device", self.device] + mib)
        # gloo stages CUDA tensors through host memory: a smaller all-reduce keeps it short.
        mib = ["--mib", "4", "--iters", "3"] if self.cpu else ["--mib", "64", "--iters", "5"]
        if text.count(f"{backend} {ok}") < 1:
            raise Failed(f"dist-check over {backend}, one rank: no '{ok}' line")
        self.row(f"collectives, {backend}, 1 rank on {self.device}", f"every kind ok; {bandwidth(text)}")
        text = self.launch("collectives_gloo_2", self.t2, ["dist-check", "--backend", "gloo", "--device", self.device] + mib)
        ranks = text.count(f"gloo {ok}")
        if ranks < 2:
            raise Failed(f"dist-check over gloo, 2 ranks on {self.device}: {ranks} of 2 ranks ok")
        self.row(f"collectives, gloo, 2 ranks on {self.device}", f"every kind ok on both ranks; {bandwidth(text)}")

    def tiny_data(self):
        with open(os.path.join(self.work, "tiny.toml"), "w") as f:
            f.write(TINY)
        self.run("synth_lip", [self.segzoo, "synth", "lip", "--out", "lip", "--n", "8", "--size", "64x64"])

    def two_ranks_like_one(self):
        """2 ranks on one device over gloo, overlap on, against one process with the whole
        batch: 3 steps with BN frozen, then 1 step with SyncBatchNorm."""
        for part, steps, extra in (("frozen", 3, []),
                                   ("syncbn", 1, ["model.freeze_bn=false", "model.sync_bn=true", "train.lr=1e-6"])):
            base = ["train", "--config", "tiny.toml", "--max-steps", str(steps), "--device", self.device]
            plain, dp = f"runs/{part}_plain", f"runs/{part}_2ranks"
            self.run(f"one_process_{part}", [self.segzoo] + base + self.set(
                "train.batch_size=4", f"train.output_dir={plain}", *extra))
            text = self.launch(f"two_ranks_{part}", self.t2, base + self.set(
                "train.batch_size=2", "dist.backend=gloo", "dist.overlap=true", f"train.output_dir={dp}", *extra))
            want = ["data parallel over 2 ranks (gloo backend): global batch 4", "gradient all-reduce overlapped with backward"]
            if part == "syncbn":
                want.append("SyncBatchNorm: batch statistics over 2 ranks")
            for w in want:
                if w not in text:
                    raise Failed(f"2 ranks, {part}: the log does not say '{w}' (logs/two_ranks_{part})")
            losses, params, stats = compare_runs(os.path.join(self.work, plain), os.path.join(self.work, dp), steps)
            tol = 1e-4
            if losses > tol or params > tol or (part == "syncbn" and stats > tol):
                raise Failed(f"2 ranks on {self.device} ({part}) differ from one process with the whole batch: losses "
                             f"{losses:.2e}, parameters {params:.2e}, BN statistics {stats:.2e} (relative; limit {tol})")
            what = "BN frozen, 3 steps" if part == "frozen" else "SyncBatchNorm, 1 step"
            self.row(f"2 ranks (gloo, {self.device}, overlap) = 1 process, {what}",
                     f"losses {losses:.1e}, parameters {params:.1e}, BN statistics {stats:.1e} (relative, ≤ {tol})",
                     losses=losses, params=params, stats=stats)

    def one_nccl_rank(self):
        """One NCCL rank with the overlap, SyncBN and the fp16 loss scaler forced on."""
        backend = "gloo" if self.cpu else "nccl"
        steps = 2 if self.cpu else 8
        text = self.launch("one_rank_fp16", self.t1, [
            "train", "--config", "tiny.toml", "--max-steps", str(steps), "--device", self.device] + self.set(
            f"dist.backend={backend}", "dist.overlap=true", "model.freeze_bn=false", "model.sync_bn=true",
            "train.precision=fp16", "train.batch_size=2", "train.output_dir=runs/fp16", "data.crop_size=[32,32]"))
        for w in (f"data parallel over 1 ranks ({backend} backend)", "SyncBatchNorm: batch statistics over 1 ranks",
                  "gradient all-reduce overlapped with backward"):
            if w not in text:
                raise Failed(f"one {backend} rank: the log does not say '{w}' (logs/one_rank_fp16)")
        records = train_records(os.path.join(self.work, "runs/fp16"))
        if len(records) != steps or not all(math.isfinite(r["loss"]) for r in records):
            raise Failed(f"one {backend} rank, fp16: losses {[r['loss'] for r in records]}")
        last = records[-1]
        self.row(f"1 {backend} rank, overlap + SyncBN + fp16 scaler", f"{steps} steps, losses finite (last "
                 f"{last['loss']:.3f}), {last.get('skipped_steps')} skipped on overflow, loss scale {last.get('loss_scale')}",
                 skipped=last.get("skipped_steps"), loss_scale=last.get("loss_scale"))

    def w48(self, *pairs):
        """The HRNetV2-W48 recipe as the check runs it: trained from scratch (no machine has
        its ImageNet weights: finding 1 of issue 30); with --cpu, the same recipe on
        HRNetV2-W18-Small-v1."""
        config = os.path.join(ROOT, "configs", "hrnetv2_w48_cityscapes.toml")
        small = ["model.name=hrnetv2_w18_small_v1"] if self.cpu else []
        return ["--config", config] + self.set('model.pretrained=""', *small, *pairs)

    def peer(self, name, mode, model, size, precision, batch, extra):
        """scripts/torch_peer.py under --peer-python, or why not."""
        py = self.args.peer_python
        py = os.path.abspath(py) if os.sep in py else py
        # PyTorch as the machine has it: without the bundle's own libraries (lib/) first.
        bundled = os.path.join(ROOT, "lib")
        paths = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p and p != bundled]
        env = {"LD_LIBRARY_PATH": ":".join(paths)}
        probe = subprocess.run([py, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True,
                               env=dict(os.environ, **env))
        if probe.returncode != 0:
            return None, f"no PyTorch in {py}"
        out = self.run(name, [py, os.path.join(ROOT, "scripts", "torch_peer.py"), mode, "--model", model,
                              "--classes", "19", "--batch", str(batch), "--size", size, "--precision", precision,
                              "--memory-format", "contiguous" if self.cpu else "channels_last",
                              "--device", self.device] + extra, timeout=600, env=env)
        return json.loads(out.strip().splitlines()[-1]), None

    def training_speed(self):
        model, size = ("hrnetv2_w18_small_v1", "32x64") if self.cpu else ("hrnetv2_w48", "512x1024")
        steps = 1 if self.cpu else 10
        h, w = size.split("x")
        for precision in ("bf16", "fp16"):
            result = os.path.join(self.work, f"bench_train_{precision}.json")
            self.run(f"bench_train_{precision}", [self.segzoo, "bench", "train", "--steps", str(steps), "--device",
                     self.device, "--json", result] + self.w48(f"data.crop_size=[{h},{w}]", "train.batch_size=2",
                                                              f"train.precision={precision}"), timeout=600)
            ours = json.load(open(result))
            extra = ["--steps", str(steps), "--warmup", "2", "--optimizer", "adam", "--lr", "0.01"]
            if not self.cpu:
                extra += ["--expect-params", str(W48_PARAMS)]
            theirs, why = self.peer(f"peer_train_{precision}", "train", model, size, precision, 2, extra)
            text = f"{ours['ms_per_step']:.1f} ms/step, peak {ours['peak_mem_mb']:.0f} MB"
            figures = {"segzoo": ours}
            if theirs:
                ratio = theirs["ms_per_step"] / ours["ms_per_step"]
                mem = ours["peak_mem_mb"] / theirs["peak_mem_mb"] if theirs.get("peak_mem_mb") else None
                peak = f", peak {theirs['peak_mem_mb']:.0f} MB" if theirs.get("peak_mem_mb") else ""
                text += f"; PyTorch {theirs['ms_per_step']:.1f} ms/step{peak}: speed ratio {ratio:.2f} (goal ≥ 1.0)"
                if mem is not None:
                    text += f", memory ratio {mem:.2f} (goal ≤ 1.0)"
                figures.update(pytorch=theirs, speed_ratio=ratio, memory_ratio=mem)
            else:
                text += f"; PyTorch eager: skipped ({why})"
            self.row(f"train {model} {precision}, batch 2 of {size}", text, **figures)

    def real_run_and_eval(self):
        """A short training run on synthetic data (loader, pinned copies, events, metrics),
        then its deploy form evaluated in fp32 and bf16."""
        size, steps = ("256x128", 3) if self.cpu else ("1024x512", 20)
        self.run("synth_cityscapes", [self.segzoo, "synth", "cityscapes", "--out", "cityscapes", "--train", "8",
                                      "--val", "4", "--size", size])
        crop = "[64,128]" if self.cpu else "[512,1024]"
        # The scale augmentation is relative to base_size: the synthetic images' width.
        data = ["data.root=cityscapes", f"data.base_size={size.split('x')[0]}"]
        self.run("train_bf16", [self.segzoo, "train", "--max-steps", str(steps), "--device", self.device] + self.w48(
            *data, f"data.crop_size={crop}", "train.batch_size=2", "train.precision=bf16", "train.output_dir=runs/real",
            "log.interval=1", "eval.start=999", f"train.checkpoint_steps={steps}", "data.num_workers=2"), timeout=600)
        records = train_records(os.path.join(self.work, "runs/real"))
        if len(records) != steps or not all(math.isfinite(r["loss"]) for r in records):
            raise Failed(f"training on synthetic data: losses {[r['loss'] for r in records]}")
        r = records[-1]
        self.row(f"train {'hrnetv2_w18_small_v1' if self.cpu else 'hrnetv2_w48'} bf16 on synthetic Cityscapes, {steps} steps",
                 f"loss {records[0]['loss']:.3f} → {r['loss']:.3f}; last step {r['ms_per_step']:.0f} ms (data "
                 f"{r['data_wait_ms']:.0f} + compute {r['compute_ms']:.0f} + comm {r['comm_ms']:.0f} + optim "
                 f"{r['optimizer_ms']:.0f}), peak {r['peak_mem_mb']:.0f} MB", last=r)
        ckpt = os.path.join("runs/real/checkpoints", f"ckpt_step_{steps:08d}.safetensors")
        mious = {}
        for precision in ("fp32", "bf16"):
            out = os.path.join(self.work, f"eval_{precision}.json")
            self.run(f"eval_{precision}", [self.segzoo, "eval", "--checkpoint", ckpt, "--precision", precision,
                                           "--device", self.device, "--json", out] +
                     self.w48(*data, "eval.scales=[1.0]", "eval.flip=false"), timeout=600)
            mious[precision] = json.load(open(out))["miou"]
        diff = abs(mious["fp32"] - mious["bf16"])
        if not all(math.isfinite(v) for v in mious.values()) or diff > 0.02:
            raise Failed(f"deploy form: mIoU fp32 {mious['fp32']} vs bf16 {mious['bf16']} (limit 0.02)")
        self.row("eval deploy form, bf16 vs fp32", f"mIoU {mious['bf16']:.4f} vs {mious['fp32']:.4f} "
                 f"(difference {diff:.4f}, ≤ 0.02)", **mious)

    def inference_speed(self):
        model, size = ("hrnetv2_w18_small_v1", "64x128") if self.cpu else ("hrnetv2_w48", "512x1024")
        iters = "2" if self.cpu else "20"
        for precision in ("fp32", "bf16"):
            result = os.path.join(self.work, f"bench_infer_{precision}.json")
            self.run(f"bench_infer_{precision}", [self.segzoo, "bench", "infer", "--size", size, "--batch", "1",
                     "--precision", precision, "--iters", iters, "--device", self.device, "--json", result] +
                     self.w48(), timeout=600)
            ours = json.load(open(result))
            theirs, why = self.peer(f"peer_infer_{precision}", "infer", model, size, precision, 1,
                                    ["--iters", iters, "--warmup", "2"])
            deploy = ours["deploy"]
            text = f"deploy form {deploy['img_per_s']:.1f} img/s (plain {ours['plain']['img_per_s']:.1f})"
            if theirs:
                text += f"; PyTorch eager {theirs['img_per_s']:.1f} img/s: ratio {deploy['img_per_s'] / theirs['img_per_s']:.2f}"
            else:
                text += f"; PyTorch eager: skipped ({why})"
            self.row(f"inference {model} {precision}, 1 × {size}", text, segzoo=ours, pytorch=theirs)

    def cpu_job_holds_no_gpu(self):
        """A job told to run on the CPU (in the CUDA build, with a GPU visible) while the
        context sampler watches: none of its processes may appear on a GPU."""
        self.launch("cpu_job", self.t2, ["dist-check", "--backend", "gloo", "--device", "cpu", "--mib", "4",
                                         "--iters", "3"], given="none")

    def gpu_contexts(self):
        if self.contexts is None:
            self.row("GPU contexts (nvidia-smi)", "skipped: " + ("--cpu" if self.cpu else "nvidia-smi did not answer"))
            return
        self.contexts.stop()
        seen, bad, unattributed = self.contexts.verdict()
        if bad:
            raise Failed("processes held contexts on GPUs they were not given: " + "; ".join(bad))
        self.row("GPU contexts (nvidia-smi)", f"{seen} process(es) of the check seen on a GPU, each only on the GPU it "
                 f"was given; the CPU job held none" + (f"; {unattributed} not attributable" if unattributed else ""),
                 seen=seen, unattributed=unattributed)

    # ---- the whole ----------------------------------------------------------------------
    def main(self):
        code = 0
        try:
            self.environment()
            if not self.cpu and shutil.which("nvidia-smi"):
                self.contexts = ContextSampler()
            self.tables()
            self.collectives()
            self.tiny_data()
            self.two_ranks_like_one()
            self.one_nccl_rank()
            if not self.cpu:
                self.cpu_job_holds_no_gpu()
            self.training_speed()
            self.real_run_and_eval()
            self.inference_speed()
            self.gpu_contexts()
        except (Failed, OSError, ValueError, KeyError) as e:
            # OSError and the rest: a missing program, unreadable output; still reported.
            what = str(e) if isinstance(e, Failed) else f"{type(e).__name__}: {e}"
            print(f"gpu_check: FAILED: {what}", file=sys.stderr)
            self.rows.append({"check": "FAILED", "result": what.splitlines()[0], "ok": False, "figures": {}})
            code = 1
        finally:
            if self.contexts:
                self.contexts.stop()
        self.report(code == 0)
        return code

    def report(self, passed):
        secs = time.time() - self.started
        lines = ["| check | result |", "|---|---|"] + [f"| {r['check']} | {r['result']} |" for r in self.rows]
        table = "\n".join(lines)
        print("\n" + table)
        with open(os.path.join(self.out, "gpu_check.md"), "w") as f:
            f.write(table + "\n")
        summary = {"mode": "cpu" if self.cpu else "gpu", "passed": passed, "seconds": round(secs, 1),
                   "segzoo": self.segzoo, "env": self.env, "rows": self.rows}
        with open(os.path.join(self.out, "gpu_check.json"), "w") as f:
            json.dump(summary, f, indent=2)
        verdict = "all passed" if passed else "FAILED"
        print(f"gpu_check: {verdict} in {secs:.0f} s (table and JSON in {self.out})")


class ContextSampler:
    """Samples nvidia-smi's compute processes every half second and attributes each to the
    GPU its command was given (SEGZOO_CHECK_GIVEN in its environment: an index, or none)."""

    def __init__(self):
        self.samples, self.done = [], threading.Event()
        uuids = subprocess.run(["nvidia-smi", "--query-gpu=index,uuid", "--format=csv,noheader"],
                               capture_output=True, text=True).stdout
        self.index = {u.strip(): i.strip() for i, u in (l.split(",") for l in uuids.splitlines() if "," in l)}
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.done.wait(0.5):
            out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,gpu_uuid", "--format=csv,noheader"],
                                 capture_output=True, text=True).stdout
            for line in out.splitlines():
                pid, _, uuid = (s.strip() for s in line.partition(","))
                if pid.isdigit():
                    self.samples.append((int(pid), self.index.get(uuid, uuid), given_of(int(pid))))

    def stop(self):
        self.done.set()
        self.thread.join(timeout=5)

    def verdict(self):
        bad, seen, unattributed = [], set(), set()
        for pid, gpu, given in self.samples:
            if given is None:
                unattributed.add(pid)
                continue
            seen.add(pid)
            if given != gpu:
                bad.append(f"pid {pid} on GPU {gpu}, given {given}")
        return len(seen), sorted(set(bad)), len(unattributed)


def given_of(pid):
    try:
        env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    except OSError:
        return None
    for kv in env:
        if kv.startswith(b"SEGZOO_CHECK_GIVEN="):
            return kv.split(b"=", 1)[1].decode()
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bandwidth(text):
    for line in text.splitlines():
        if "bus bandwidth" in line:
            return line[line.index("all-reduce"):].strip()
    return "no bandwidth line"


def train_records(run):
    path = os.path.join(run, "metrics.jsonl")
    if not os.path.exists(path):
        raise Failed(f"no {path}")
    return [r for r in map(json.loads, open(path)) if r.get("kind") == "train"]


def safetensors_f32(path):
    """The f32 tensors of a safetensors file, flat (pure Python: no numpy needed)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        a, b = t["data_offsets"]
        out[name] = array.array("f", data[a:b])
    return out


def compare_runs(plain, other, steps):
    """Largest relative differences of two runs: per-step losses, then parameters and BN
    running statistics at `steps` (each tensor's difference over its scale, at least 1)."""
    lp, lo = train_records(plain), train_records(other)
    if len(lp) < steps or len(lo) < steps:
        raise Failed(f"fewer than {steps} steps in {plain} or {other}")
    losses = max(abs(a["loss"] - b["loss"]) / max(abs(a["loss"]), 1.0) for a, b in zip(lp[:steps], lo[:steps]))
    name = f"checkpoints/ckpt_step_{steps:08d}.safetensors"
    a, b = safetensors_f32(os.path.join(plain, name)), safetensors_f32(os.path.join(other, name))
    params = stats = 0.0
    for k, x in a.items():
        if not k.startswith("model."):
            continue
        y = b[k]
        d = max((abs(p - q) for p, q in zip(x, y)), default=0.0) / max(max((abs(p) for p in x), default=0.0), 1.0)
        if ".running_" in k:
            stats = max(stats, d)
        else:
            params = max(params, d)
    return losses, params, stats


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="every step on the CPU (gloo, small models): seconds")
    ap.add_argument("--bin", help="folder of segzoo and segzoo-launch (default: the bundle's bin/, else target/release)")
    ap.add_argument("--out", help="folder for gpu_check.json, gpu_check.md, logs/ and work/ (default: a temporary one)")
    ap.add_argument("--peer-python", default="python3", help="python with PyTorch for the eager peer (default: python3)")
    sys.exit(Check(ap.parse_args()).main())


if __name__ == "__main__":
    main()
