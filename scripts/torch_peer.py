#!/usr/bin/env python3
"""PyTorch-eager peer of `segzoo bench train` / `segzoo bench infer`.

scripts/gpu_check.sh runs segzoo's benchmarks on a GPU machine; this script runs the same
work in plain PyTorch eager (same HRNetV2 model, batch, input size, precision and memory
format, synthetic data made once on the device) so that the two can be compared for speed
and peak memory. It prints one JSON object on the last line of stdout.

    python3 scripts/torch_peer.py train --model hrnetv2_w48 --classes 19 --batch 2 \\
        --size 512x1024 --precision bf16 --memory-format channels_last --steps 10 --warmup 3
    python3 scripts/torch_peer.py infer --model hrnetv2_w48 --batch 1 --size 512x1024 --iters 20
    torchrun ... scripts/torch_peer.py train --ddp --hook bf16 ...   # DDP over gloo (scripts/bench_link.sh)

With `--ddp` (under torchrun) the model is wrapped in DistributedDataParallel over gloo
(25 MiB buckets, as segzoo's dist.bucket_mb) with one of PyTorch's communication hooks:
none, fp16 (fp16_compress_hook), bf16 (bf16_compress_hook) or powersgd (PowerSGD rank
--powersgd-rank, warm start and error feedback), the peers of segzoo's dist.compression.

It is self-contained on purpose: the GPU machines have PyTorch but no network, so it
carries its own HRNetV2 (written after the architecture of HRNet-Semantic-Segmentation's
`seg_hrnet.py`, with the same state-dict names and shapes, so segzoo's weights could be
loaded) and imports nothing beyond torch and the standard library.
"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------

# Per stage: (num_modules, block, num_blocks, num_channels), as the official YAML configs.
def _width(w):
    return [(1, "BOTTLENECK", [4], [64]),
            (1, "BASIC", [4, 4], [w, 2 * w]),
            (4, "BASIC", [4, 4, 4], [w, 2 * w, 4 * w]),
            (3, "BASIC", [4, 4, 4, 4], [w, 2 * w, 4 * w, 8 * w])]


PRESETS = {
    "hrnetv2_w48": _width(48),
    "hrnetv2_w18": _width(18),
    "hrnetv2_w18_small_v1": [(1, "BOTTLENECK", [1], [32]),
                             (1, "BASIC", [2, 2], [16, 32]),
                             (1, "BASIC", [2, 2, 2], [16, 32, 64]),
                             (1, "BASIC", [2, 2, 2, 2], [16, 32, 64, 128])],
    "hrnetv2_w18_small_v2": [(1, "BOTTLENECK", [2], [64]),
                             (1, "BASIC", [2, 2], [18, 36]),
                             (3, "BASIC", [2, 2, 2], [18, 36, 72]),
                             (2, "BASIC", [2, 2, 2, 2], [18, 36, 72, 144])],
}


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


def bn(c):
    # PyTorch's defaults (momentum 0.1, eps 1e-5), as segzoo's BatchNorm2d.
    return nn.BatchNorm2d(c)


def resize(x, h, w):
    # The official seg code resizes with ALIGN_CORNERS False; skip identity resizes.
    if x.shape[2] == h and x.shape[3] == w:
        return x
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(cin, planes, stride), bn(planes)
        self.conv2, self.bn2 = conv3x3(planes, planes), bn(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        res = x if self.downsample is None else self.downsample(x)
        return self.relu(out + res)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=False), bn(planes)
        self.conv2, self.bn2 = conv3x3(planes, planes, stride), bn(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = bn(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        res = x if self.downsample is None else self.downsample(x)
        return self.relu(out + res)


BLOCKS = {"BASIC": BasicBlock, "BOTTLENECK": Bottleneck}


def make_layer(block, cin, planes, blocks, stride=1):
    """`blocks` residual blocks; the first gets a 1x1 conv + BN shortcut when shapes change."""
    downsample = None
    if stride != 1 or cin != planes * block.expansion:
        downsample = nn.Sequential(nn.Conv2d(cin, planes * block.expansion, 1, stride, bias=False),
                                   bn(planes * block.expansion))
    layers = [block(cin, planes, stride, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches, then fuse: output i = ReLU(sum over j of branch j brought to i)."""

    def __init__(self, block, num_blocks, in_channels, num_channels):
        super().__init__()
        n = len(num_blocks)
        self.branches = nn.ModuleList(
            make_layer(block, in_channels[i], num_channels[i], num_blocks[i]) for i in range(n))
        ch = [c * block.expansion for c in num_channels]
        self.out_channels = ch
        self.fuse_layers = None
        if n > 1:
            self.fuse_layers = nn.ModuleList(
                nn.ModuleList(self._fuse_cell(ch, i, j) for j in range(n)) for i in range(n))
        self.relu = nn.ReLU(inplace=False)

    @staticmethod
    def _fuse_cell(ch, i, j):
        if j == i:
            return None
        if j > i:  # lower resolution: 1x1 conv + BN to branch i's width, upsampled in forward
            return nn.Sequential(nn.Conv2d(ch[j], ch[i], 1, bias=False), bn(ch[i]))
        steps = []  # higher resolution: i - j stride-2 3x3 convs, widening only at the last
        for k in range(i - j):
            last = k == i - j - 1
            out = ch[i] if last else ch[j]
            mods = [conv3x3(ch[j], out, 2), bn(out)] + ([] if last else [nn.ReLU(inplace=True)])
            steps.append(nn.Sequential(*mods))
        return nn.Sequential(*steps)

    def forward(self, xs):
        xs = [b(x) for b, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        out = []
        for i, row in enumerate(self.fuse_layers):
            h, w = xs[i].shape[2], xs[i].shape[3]
            y = None
            for j, cell in enumerate(row):
                t = xs[j] if cell is None else cell(xs[j])
                if j > i:
                    t = resize(t, h, w)
                y = t if y is None else y + t
            out.append(self.relu(y))
        return out


class HRNetV2(nn.Module):
    def __init__(self, preset, num_classes):
        super().__init__()
        s1, *later = PRESETS[preset]
        self.conv1, self.bn1 = conv3x3(3, 64, 2), bn(64)
        self.conv2, self.bn2 = conv3x3(64, 64, 2), bn(64)
        self.relu = nn.ReLU(inplace=True)
        b1 = BLOCKS[s1[1]]
        self.layer1 = make_layer(b1, 64, s1[3][0], s1[2][0])
        pre = [s1[3][0] * b1.expansion]
        for k, (modules, block, blocks, channels) in enumerate(later):
            block = BLOCKS[block]
            cur = [c * block.expansion for c in channels]
            setattr(self, f"transition{k + 1}", self._transition(pre, cur))
            mods = []
            for _ in range(modules):
                mods.append(HighResolutionModule(block, blocks, cur if not mods else pre, channels))
                pre = mods[-1].out_channels
            setattr(self, f"stage{k + 2}", nn.Sequential(*mods))
        c = sum(pre)
        self.last_layer = nn.Sequential(nn.Conv2d(c, c, 1), bn(c), nn.ReLU(inplace=True),
                                        nn.Conv2d(c, num_classes, 1))
        # The official init: conv weights N(0, 0.001), BN weight 1 and bias 0.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)

    @staticmethod
    def _transition(pre, cur):
        layers = []
        for i in range(len(cur)):
            if i < len(pre):  # an existing branch: adapt its width if it changes
                layers.append(None if cur[i] == pre[i] else
                              nn.Sequential(conv3x3(pre[i], cur[i]), bn(cur[i]), nn.ReLU(inplace=True)))
            else:  # a new branch from the lowest resolution, halved per step
                steps = i + 1 - len(pre)
                chain = []
                for k in range(steps):
                    cout = cur[i] if k == steps - 1 else pre[-1]
                    chain.append(nn.Sequential(conv3x3(pre[-1], cout, 2), bn(cout), nn.ReLU(inplace=True)))
                layers.append(nn.Sequential(*chain))
        return nn.ModuleList(layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        ys = [self.layer1(x)]
        for k in range(3):
            trans, stage = getattr(self, f"transition{k + 1}"), getattr(self, f"stage{k + 2}")
            # Existing branches go through (or around) their transition; new ones grow
            # from the lowest-resolution output.
            xs = [(ys[i] if t is None else t(ys[i])) if i < len(ys) else t(ys[-1])
                  for i, t in enumerate(trans)]
            for m in stage:
                xs = m(xs)
            ys = xs
        h, w = ys[0].shape[2], ys[0].shape[3]
        x = torch.cat([resize(y, h, w) for y in ys], 1)
        return self.last_layer(x)  # logits at 1/4 of the input resolution


# ---------------------------------------------------------------------------------------
# Benchmark
# ---------------------------------------------------------------------------------------

def fail(msg):
    print(f"torch_peer: {msg}", file=sys.stderr)
    sys.exit(1)


def parse_size(s):
    try:
        h, w = (int(v) for v in s.lower().split("x"))
        assert h > 0 and w > 0
        return h, w
    except (ValueError, AssertionError):
        fail(f"--size must be HxW (e.g. 512x1024), got {s!r}")


def check_names(model, path):
    """Compare the state dict with a `segzoo model-info MODEL --json` manifest."""
    with open(path) as f:
        manifest = json.load(f)
    want = [(t["name"], list(t["shape"])) for t in manifest["tensors"]]
    have = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    diffs = []
    want_d, have_d = dict(want), dict(have)
    for k, shape in want:
        if k not in have_d:
            diffs.append(f"missing here: {k} {shape}")
        elif have_d[k] != shape:
            diffs.append(f"shape of {k}: here {have_d[k]}, manifest {shape}")
    diffs += [f"extra here: {k} {shape}" for k, shape in have if k not in want_d]
    if diffs:
        print(f"torch_peer: state dict differs from {path} ({len(diffs)} differences):", file=sys.stderr)
        for d in diffs[:20]:
            print(f"  {d}", file=sys.stderr)
        sys.exit(1)
    print(f"state dict matches {path}: {len(have)} entries", file=sys.stderr)


def setup(args):
    if args.model not in PRESETS:
        fail(f"unknown model {args.model!r}; one of {', '.join(sorted(PRESETS))}")
    try:
        dev = torch.device(args.device)
    except RuntimeError as e:
        fail(f"bad --device {args.device!r}: {e}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            fail(f"--device {args.device} requested but CUDA is not available "
                 f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})")
        torch.cuda.set_device(dev)
        torch.backends.cudnn.benchmark = True  # as segzoo's cudnn autotune
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    if dtype is not None and not torch.amp.is_autocast_available(dev.type):
        fail(f"autocast is not available on device type {dev.type!r}")
    args.hw = parse_size(args.size)  # before the model is built: fail fast
    fmt = torch.channels_last if args.memory_format == "channels_last" else torch.contiguous_format
    torch.manual_seed(0)
    model = HRNetV2(args.model, args.classes)
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.model}: {params:,} parameters ({args.classes} classes)", file=sys.stderr)
    if args.expect_params is not None and params != args.expect_params:
        fail(f"parameter count of {args.model}: {params} here, expected {args.expect_params}")
    if args.check_names:
        check_names(model, args.check_names)
    model = model.to(dev, memory_format=fmt)
    return model, dev, dtype, fmt, params


def autocast(dev, dtype):
    if dtype is None:
        return torch.autocast(dev.type, enabled=False)
    try:
        return torch.autocast(dev.type, dtype=dtype)
    except (RuntimeError, AssertionError) as e:
        fail(f"autocast to {dtype} on {dev.type} is not supported by torch {torch.__version__}: {e}")


def timed_ms(dev, n, fn):
    """Milliseconds for n calls of fn: CUDA events around the whole loop on CUDA (no
    per-step sync, as segzoo times its loop), perf_counter on CPU (which runs eagerly)."""
    if dev.type != "cuda":
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return 1000.0 * (time.perf_counter() - t0)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(n):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def begin_peak(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)


def report(args, dev, params, **figures):
    peak = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1) if dev.type == "cuda" else None
    h, w = args.hw
    return {"mode": args.mode, "model": args.model, "params": params, **figures, "peak_mem_mb": peak,
            "precision": args.precision, "memory_format": args.memory_format, "batch": args.batch,
            "size": [h, w], "warmup": args.warmup,
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "torch": torch.__version__}


def wrap_ddp(args, model):
    """DistributedDataParallel over gloo with the hook `--hook` asks for (under torchrun)."""
    import torch.distributed as dist
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook

    dist.init_process_group("gloo")
    ddp = torch.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=25)
    if args.hook == "fp16":
        ddp.register_comm_hook(None, default_hooks.fp16_compress_hook)
    elif args.hook == "bf16":
        ddp.register_comm_hook(None, default_hooks.bf16_compress_hook)
    elif args.hook == "powersgd":
        # PyTorch needs a start iteration above 1 with warm start and error feedback; the
        # warm-up steps run before it, so the timed ones are compressed.
        state = powerSGD_hook.PowerSGDState(process_group=None, matrix_approximation_rank=args.powersgd_rank,
                                            start_powerSGD_iter=2, warm_start=True, use_error_feedback=True)
        ddp.register_comm_hook(state, powerSGD_hook.powerSGD_hook)
    return ddp


def run_train(args):
    model, dev, dtype, fmt, params = setup(args)
    if args.ddp:
        if args.warmup < 3:
            fail("--ddp needs --warmup 3 or more (PowerSGD starts at iteration 2)")
        model = wrap_ddp(args, model)
    (h, w), last = args.hw, [None]
    model.train()
    if args.optimizer == "adam":  # the recipe's Adam
        opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.99, 0.999), eps=1e-3, weight_decay=1e-5)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    scaler = None
    if args.precision == "fp16":
        try:
            scaler = torch.amp.GradScaler(dev.type)
        except Exception as e:
            fail(f"GradScaler({dev.type!r}) is not available in torch {torch.__version__}: {e}")
    # One synthetic batch, made once on the device, already in the step's layout.
    x = torch.randn(args.batch, 3, h, w, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, args.classes, (args.batch, h, w), device=dev, dtype=torch.int64)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(dev, dtype):
            logits = model(x)
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        # Cross-entropy in fp32, as autocast runs it.
        loss = F.cross_entropy(logits.float(), y, ignore_index=255)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        last[0] = loss  # read once after the timed loop: no sync inside it

    begin_peak(dev)
    for _ in range(args.warmup):
        step()
    ms = timed_ms(dev, args.steps, step) / args.steps
    loss = float(last[0].detach())
    if not math.isfinite(loss):
        print(f"torch_peer: warning: final loss is {loss}", file=sys.stderr)
    return report(args, dev, params, ms_per_step=round(ms, 3), img_per_s=round(1000.0 * args.batch / ms, 3),
                  loss=loss, optimizer=args.optimizer, steps=args.steps, hook=args.hook if args.ddp else None)


def run_infer(args):
    model, dev, dtype, fmt, params = setup(args)
    (h, w), last = args.hw, [None]
    model.eval()
    x = torch.randn(args.batch, 3, h, w, device=dev).contiguous(memory_format=fmt)

    def forward():
        with autocast(dev, dtype):
            last[0] = model(x)  # logits at 1/4 resolution, as segzoo bench infer

    with torch.inference_mode():
        begin_peak(dev)
        for _ in range(args.warmup):
            forward()
        ms = timed_ms(dev, args.iters, forward) / args.iters
    return report(args, dev, params, ms_per_batch=round(ms, 3), img_per_s=round(1000.0 * args.batch / ms, 3),
                  out_shape=list(last[0].shape), iters=args.iters)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    for name in ("train", "infer"):
        s = sub.add_parser(name)
        s.add_argument("--model", default="hrnetv2_w48", help=", ".join(PRESETS))
        s.add_argument("--classes", type=int, default=19)
        s.add_argument("--batch", type=int, default=2 if name == "train" else 1)
        s.add_argument("--size", default="512x1024", help="HxW")
        s.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
        s.add_argument("--memory-format", choices=["channels_last", "contiguous"], default="contiguous")
        s.add_argument("--warmup", type=int, default=3)
        s.add_argument("--device", default="cuda:0")
        s.add_argument("--expect-params", type=int, help="exit 1 unless the model has N parameters")
        s.add_argument("--check-names", metavar="FILE.json",
                       help="exit 1 unless the state dict matches this `segzoo model-info M --json`")
        s.add_argument("--json", help="also write the result here")
        if name == "train":
            s.add_argument("--ddp", action="store_true", help="DistributedDataParallel under torchrun (gloo)")
            s.add_argument("--hook", choices=["none", "fp16", "bf16", "powersgd"], default="none")
            s.add_argument("--powersgd-rank", type=int, default=2)
            s.add_argument("--threads", type=int, help="torch intra-op threads")
            s.add_argument("--steps", type=int, default=10)
            s.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
            s.add_argument("--lr", type=float, default=0.01)
        else:
            s.add_argument("--iters", type=int, default=20)
    args = p.parse_args()
    if args.batch < 1 or args.warmup < 0 or getattr(args, "steps", getattr(args, "iters", 1)) < 1:
        fail("--batch and --steps/--iters must be at least 1, --warmup at least 0")
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    result = run_train(args) if args.mode == "train" else run_infer(args)
    line = json.dumps(result)
    if args.json:
        with open(args.json, "w") as f:
            f.write(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
