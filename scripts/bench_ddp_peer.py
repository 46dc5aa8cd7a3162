"""The PyTorch peer of `segzoo bench train` under segzoo-launch: the official HRNetV2 trained
with torch.nn.parallel.DistributedDataParallel over gloo under torchrun, on synthetic
tensors of the same size, with the same per-rank batch, optimiser, buckets and threads.
Rank 0 prints the mean milliseconds per step after the warm-up steps.

    # in a venv with the full torch 2.11.0 (`pip install torch==2.11.0`), from the repo root:
    torchrun --standalone --nproc-per-node 2 scripts/bench_ddp_peer.py <HRNet checkout> \\
        --batch 2 --size 128x256 --threads 1 --steps 20

and segzoo's side, the same model, per-rank batch, size and optimiser (configs/quickstart.toml):

    segzoo-launch --rank-table <2-device table> -- segzoo bench train \\
        --config configs/quickstart.toml --steps 20 --set train.batch_size=2

Nothing of the official repository (HRNet/HRNet-Semantic-Segmentation, branch HRNet-OCR) is
copied here: its path is an argument, its model and loss are imported from <path>/lib with
the stand-ins gen_parity.py installs (a `config` module, numpy.int), and its commit is
printed with the result. Its SyncBatchNorm layers are made plain BatchNorm2d, as segzoo's
model is without model.sync_bn.
"""

import argparse
import importlib
import os
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
from official_config import AttrDict, git_commit, parse_hw, stage  # noqa: E402


def w18_small_v1(num_classes):
    """The official experiments' HRNetV2-W18-Small-v1 (seg_hrnet_w18_small_v1_*.yaml)."""
    return AttrDict.of({
        "MODEL": {
            "NAME": "seg_hrnet", "PRETRAINED": "", "ALIGN_CORNERS": False, "NUM_OUTPUTS": 1,
            "EXTRA": {
                "FINAL_CONV_KERNEL": 1,
                "STAGE1": stage(1, "BOTTLENECK", [1], [32]),
                "STAGE2": stage(1, "BASIC", [2, 2], [16, 32]),
                "STAGE3": stage(1, "BASIC", [2, 2, 2], [16, 32, 64]),
                "STAGE4": stage(1, "BASIC", [2, 2, 2, 2], [16, 32, 64, 128]),
            },
        },
        "DATASET": {"NUM_CLASSES": num_classes},
        "LOSS": {"BALANCE_WEIGHTS": [1]},
        "TRAIN": {"IGNORE_LABEL": 255},
    })


def plain_bn(module):
    """Every SyncBatchNorm of `module` as a BatchNorm2d with the same parameters."""
    for name, child in module.named_children():
        if isinstance(child, nn.SyncBatchNorm):
            bn = nn.BatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                child.track_running_stats)
            bn.load_state_dict(child.state_dict())
            setattr(module, name, bn)
        else:
            plain_bn(child)
    return module


def official_model(checkout, cfg):
    lib = Path(checkout).resolve() / "lib"
    if not (lib / "models/seg_hrnet.py").is_file():
        sys.exit(f"bench_ddp_peer: {lib}/models/seg_hrnet.py is missing (need the HRNet-OCR branch)")
    if not hasattr(np, "int"):
        np.int = int  # removed alias, still called by the official models
    stand_in = types.ModuleType("config")
    stand_in.config = cfg
    sys.modules["config"] = stand_in
    sys.path.insert(0, str(lib))
    seg_hrnet = importlib.import_module("models.seg_hrnet")
    criterion = importlib.import_module("core.criterion")
    full_model = importlib.import_module("utils.utils").FullModel
    model = plain_bn(seg_hrnet.get_seg_model(cfg))
    return full_model(model, criterion.CrossEntropy(ignore_label=cfg.TRAIN.IGNORE_LABEL))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("official", help="checkout of HRNet/HRNet-Semantic-Segmentation, branch HRNet-OCR")
    ap.add_argument("--batch", type=int, default=2, help="per-rank batch")
    ap.add_argument("--size", type=parse_hw, default=parse_hw("128x256"))
    ap.add_argument("--classes", type=int, default=19)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads per rank")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam, as configs/quickstart.toml")
    ap.add_argument("--bucket-mb", type=float, default=25.0, help="as dist.bucket_mb")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(304)
    model = official_model(args.official, w18_small_v1(args.classes))
    ddp = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=args.bucket_mb)
    optim = torch.optim.Adam(ddp.parameters(), lr=args.lr)
    h, w = args.size
    x = torch.randn(args.batch, 3, h, w)
    y = torch.randint(args.classes, (args.batch, h, w))

    def step():
        loss, _ = ddp(x, y)
        optim.zero_grad(set_to_none=True)
        loss.mean().backward()
        optim.step()

    for _ in range(args.warmup):
        step()
    dist.barrier()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    dist.barrier()
    ms = 1000 * (time.perf_counter() - start) / args.steps
    if rank == 0:
        sha, dirty = git_commit(args.official, "bench_ddp_peer", "HRNet-Semantic-Segmentation")
        print(f"PyTorch {torch.__version__} DDP (gloo) over {world} ranks: HRNetV2-W18-Small-v1, batch "
              f"{args.batch} of {h}x{w} per rank, {args.threads} thread(s) per rank: {ms:.1f} ms/step "
              f"(official HRNet-Semantic-Segmentation {sha[:7]}{' with local changes' if dirty else ''}; "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
