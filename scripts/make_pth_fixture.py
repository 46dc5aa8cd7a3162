"""Writes tests/fixtures/tiny_official.pth: a tiny state dict in the layout of the
official HRNet seg checkpoints (FullModel `model.` prefix, `loss.criterion.weight`),
with a non-contiguous tensor and an int64 buffer, to test `.pth` reading.
Run with the project venv (its torch is installed without deps, so supply them):
  pip install --target /tmp/pydeps typing_extensions filelock sympy networkx jinja2 fsspec
  PYTHONPATH=/tmp/pydeps .venv/bin/python scripts/make_pth_fixture.py"""
import torch

sd = {
    "model.conv.weight": torch.arange(24, dtype=torch.float32).reshape(2, 3, 2, 2),
    "model.fc.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3).t(),  # non-contiguous
    "model.bn.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
    "model.half": torch.tensor([0.5, -1.25], dtype=torch.float16),
    "loss.criterion.weight": torch.ones(19),
}
torch.save(sd, "tests/fixtures/tiny_official.pth")
