#!/usr/bin/env python3
"""Predict a segzoo list with an exported ONNX model on ONNX Runtime (no torch).

    python scripts/onnx_infer.py MODEL.onnx DATA_ROOT LIST OUT_DIR [--batch-size N] [--provider cpu|cuda]

Reproduces `segzoo eval`'s single-scale, no-flip, whole-image inference:
  * the image is decoded to 8-bit RGB at its own size (segzoo's val transform neither
    resizes nor crops), normalised as segzoo's `normalize` does, in float32:
    x * (1 / (255 * std)) - mean / std;
  * the batch is zero-padded bottom/right (in normalised space) to the model's input
    multiple, the logits are resized bilinearly (torch's `upsample_bilinear2d`, the
    model's align_corners) to the padded size and cropped back to the image;
  * argmax over the classes gives train ids, written as an 8-bit grey PNG
    `OUT_DIR/<image file stem>.png`, the layout `segzoo eval-preds --pred-dir` reads.

LIST holds `image [label]` lines (blank lines and `#` comments skipped), paths relative
to DATA_ROOT. A relative LIST is looked up as given, then under DATA_ROOT (as segzoo's
`data.val_list`). Everything the preprocessing needs comes from the ONNX file's
metadata_props (written by `segzoo export --format onnx`).
"""
import argparse
import json
import os
import sys

import numpy as np

try:
    import onnxruntime as ort
    from PIL import Image
except ImportError as e:  # pragma: no cover - a setup problem, said plainly
    sys.exit(f"onnx_infer.py: {e}; run scripts/setup.sh (it installs onnxruntime and pillow into .venv)")

REQUIRED_META = ("num_classes", "mean", "std", "align_corners", "input_multiple", "task")


def fail(msg):
    sys.exit(f"onnx_infer.py: error: {msg}")


# --- torch's upsample_bilinear2d in numpy ---------------------------------------------


def _linear_indices(in_size, out_size, align_corners, count=None):
    """Source indices and weights of one axis as ATen computes them (float32 maths):
    the first `count` (default all) of `out_size` output positions."""
    count = out_size if count is None else count
    dst = np.arange(count, dtype=np.float32)
    if align_corners:
        scale = np.float32(in_size - 1) / np.float32(out_size - 1) if out_size > 1 else np.float32(0.0)
        src = scale * dst
    else:
        scale = np.float32(in_size) / np.float32(out_size)
        # ATen's scale * (dst + 0.5) - 0.5 compiles to one fused multiply-add (a single
        # rounding): exact in float64, then rounded once to float32. Two roundings move
        # the weights by up to 1e-5 on large maps.
        fused = np.float64(scale) * (dst.astype(np.float64) + 0.5) - 0.5
        src = np.maximum(fused.astype(np.float32), np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    lam1 = np.clip(src - i0.astype(np.float32), 0.0, 1.0).astype(np.float32)
    i1 = i0 + (i0 < in_size - 1).astype(np.int64)
    return i0, i1, np.float32(1.0) - lam1, lam1


def _bilinear_blocks(x, out_h, out_w, align_corners, keep_h, keep_w, block):
    """Row blocks (≤ `block` output rows) of the top-left keep_h×keep_w of x resized to
    out_h×out_w; a full-size map of 19 classes never has to be held at once."""
    in_h, in_w = x.shape[2:]
    if (in_h, in_w) == (out_h, out_w):  # segzoo's resize_bilinear returns its input
        for r in range(0, keep_h, block):
            yield x[:, :, r : min(r + block, keep_h), :keep_w]
        return
    h0, h1, hl0, hl1 = _linear_indices(in_h, out_h, align_corners, keep_h)
    w0, w1, wl0, wl1 = _linear_indices(in_w, out_w, align_corners, keep_w)
    x = x.astype(np.float32, copy=False)
    # Separable, as ATen nests it: along W on the input rows, then along H.
    rows = x[:, :, :, w0] * wl0 + x[:, :, :, w1] * wl1
    for r in range(0, keep_h, block):
        s = slice(r, min(r + block, keep_h))
        out = rows[:, :, h0[s], :] * hl0[s, None]
        out += rows[:, :, h1[s], :] * hl1[s, None]
        yield out


def resize_bilinear(x, out_h, out_w, align_corners, keep_h=None, keep_w=None, block=256):
    """`torch.nn.functional.interpolate(x, (out_h, out_w), mode="bilinear",
    align_corners=...)` of an N×C×H×W float32 array, cut to its top-left keep_h×keep_w
    (default all): segzoo resizes logits to the padded input and crops to the image."""
    keep_h = out_h if keep_h is None else keep_h
    keep_w = out_w if keep_w is None else keep_w
    return np.concatenate(list(_bilinear_blocks(x, out_h, out_w, align_corners, keep_h, keep_w, block)), axis=2)


def upsampled_argmax(x, out_h, out_w, align_corners, keep_h, keep_w, block=256):
    """argmax over classes of `resize_bilinear(...)`, block by block (N×keep_h×keep_w)."""
    blocks = _bilinear_blocks(x, out_h, out_w, align_corners, keep_h, keep_w, block)
    return np.concatenate([b.argmax(axis=1) for b in blocks], axis=1)


# --- the model's contract ----------------------------------------------------------------


class Contract:
    def __init__(self, meta, path):
        missing = [k for k in REQUIRED_META if k not in meta]
        if missing:
            fail(f"{path}: metadata_props lack {', '.join(missing)} (export with `segzoo export --format onnx`)")
        self.task = meta["task"]
        if self.task != "segmentation":
            fail(f"{path}: task is {self.task!r}; this script predicts segmentation maps")
        self.num_classes = int(meta["num_classes"])
        if not 1 <= self.num_classes <= 255:
            fail(f"{path}: num_classes = {self.num_classes} does not fit an 8-bit train-id PNG")
        self.align_corners = _bool(meta["align_corners"], "align_corners", path)
        self.input_multiple = max(int(meta["input_multiple"]), 1)
        pixel_scale = meta.get("pixel_scale", "1")
        if pixel_scale not in ("1", "255"):
            fail(f"{path}: pixel_scale must be \"1\" or \"255\", got {pixel_scale!r}")
        mean = np.array(json.loads(meta["mean"]), dtype=np.float32)
        std = np.array(json.loads(meta["std"]), dtype=np.float32)
        if mean.shape != (3,) or std.shape != (3,) or not (std > 0).all():
            fail(f"{path}: mean and std must be 3 numbers each (std positive), got {meta['mean']} and {meta['std']}")
        # segzoo's normalize: scale = 1 / (255 std), shift = mean / std, all f32.
        pixel = np.float32(255.0 if pixel_scale == "1" else 1.0)
        self.scale = (np.float32(1.0) / (pixel * std)).astype(np.float32)
        self.shift = (mean / std).astype(np.float32)
        self.dynamic = _bool(meta.get("dynamic", "true"), "dynamic", path)
        self.fixed = None
        self.warned = False
        if not self.dynamic:
            size = meta.get("input_size", "")
            try:
                fh, fw = (int(v) for v in size.lower().split("x"))
            except ValueError:
                fail(f"{path}: dynamic is false but input_size is {size!r}, not HxW")
            self.fixed = (fh, fw)

    def padded(self, h, w):
        m = self.input_multiple
        ph, pw = -(-h // m) * m, -(-w // m) * m
        if self.fixed is None:
            return ph, pw
        fh, fw = self.fixed
        if ph > fh or pw > fw:
            fail(f"an image of {h}x{w} does not fit the model's fixed input {fh}x{fw}; export with dynamic sizes")
        if (ph, pw) != (fh, fw) and not self.warned:
            self.warned = True
            print(f"note: {h}x{w} images are zero-padded to the fixed input {fh}x{fw}, where segzoo eval pads "
                  f"only to {ph}x{pw}: scores may differ near the padding", file=sys.stderr)
        return fh, fw

    def normalise(self, rgb):
        """HWC uint8 → CHW float32, exactly segzoo's `normalize`."""
        x = rgb.astype(np.float32) * self.scale - self.shift
        return np.ascontiguousarray(x.transpose(2, 0, 1))


def _bool(v, key, path):
    if v in ("true", "false"):
        return v == "true"
    fail(f"{path}: metadata {key} must be \"true\" or \"false\", got {v!r}")


# --- the list ---------------------------------------------------------------------------


def read_list(path):
    """`image [label]` lines as segzoo's read_list reads them; (line, image, label)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        fail(f"cannot read list {path}: {e.strerror}")
    entries = []
    for i, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) > 2:
            fail(f"{path}:{i}: expected at most two columns, found {len(parts)}: {line!r}")
        entries.append((i, parts[0], parts[1] if len(parts) == 2 else None))
    if not entries:
        fail(f"{path}: the list has no entries")
    return entries


def resolve_list(root, lst):
    if os.path.isabs(lst) or os.path.isfile(lst):
        return lst
    under = os.path.join(root, lst)
    return under if os.path.isfile(under) else lst


def load_rgb(path, at):
    try:
        with Image.open(path) as im:
            if im.format not in ("PNG", "JPEG"):
                fail(f"{at}: {path}: not a PNG or JPEG image")
            return np.asarray(im.convert("RGB"))
    except OSError as e:
        fail(f"{at}: {path}: cannot read image ({e})")


def label_size(path, at):
    try:
        with Image.open(path) as im:
            return im.size  # (w, h), header only
    except OSError as e:
        fail(f"{at}: {path}: cannot read label ({e})")


# --- main -------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="ONNX file written by `segzoo export --format onnx`")
    p.add_argument("data_root", help="root the list's paths are relative to")
    p.add_argument("list", help="list of `image [label]` lines")
    p.add_argument("out_dir", help="folder for the <image stem>.png train-id predictions")
    p.add_argument("--batch-size", type=int, default=1, help="images per run (consecutive same-size ones)")
    p.add_argument("--provider", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0: ORT's default)")
    a = p.parse_args()

    if not os.path.isfile(a.model):
        fail(f"model {a.model}: no such file")
    if not os.path.isdir(a.data_root):
        fail(f"data root {a.data_root}: no such folder")
    if a.batch_size < 1:
        fail("--batch-size must be at least 1")
    list_path = resolve_list(a.data_root, a.list)
    entries = read_list(list_path)

    # Predictions are named by image stem alone: two images with one stem would collide.
    stems = {}
    for line, image, _ in entries:
        stem = os.path.splitext(os.path.basename(image))[0]
        if stem in stems:
            fail(f"{list_path}:{line}: image {image} has the same file stem as line {stems[stem]}")
        stems[stem] = line

    opts = ort.SessionOptions()
    if a.threads:
        opts.intra_op_num_threads = a.threads
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if a.provider == "cuda" else ["CPUExecutionProvider"]
    try:
        sess = ort.InferenceSession(a.model, sess_options=opts, providers=providers)
    except Exception as e:  # ORT raises its own exception types
        fail(f"{a.model}: ONNX Runtime cannot load it: {e}")
    c = Contract(sess.get_modelmeta().custom_metadata_map, a.model)
    in_names = [i.name for i in sess.get_inputs()]
    out_names = [o.name for o in sess.get_outputs()]
    if "image" not in in_names or "logits" not in out_names:
        fail(f"{a.model}: expected input `image` and output `logits`, found inputs {in_names}, outputs {out_names}")

    os.makedirs(a.out_dir, exist_ok=True)
    done = 0

    def flush(batch):
        nonlocal done
        h, w = batch[0][1].shape[1:]
        ph, pw = c.padded(h, w)
        x = np.zeros((len(batch), 3, ph, pw), dtype=np.float32)
        for k, (_, img) in enumerate(batch):
            x[k, :, :h, :w] = img
        logits = sess.run(["logits"], {"image": x})[0]
        if logits.ndim != 4 or logits.shape[:2] != (len(batch), c.num_classes):
            fail(f"{a.model}: logits have shape {logits.shape}, expected {len(batch)}x{c.num_classes}xhxw")
        pred = upsampled_argmax(logits, ph, pw, c.align_corners, h, w).astype(np.uint8)
        for k, (stem, _) in enumerate(batch):
            Image.fromarray(pred[k]).save(os.path.join(a.out_dir, stem + ".png"))
        done += len(batch)

    batch = []
    for line, image, label in entries:
        at = f"{list_path}:{line}"
        rgb = load_rgb(os.path.join(a.data_root, image), at)
        h, w = rgb.shape[:2]
        if label is not None:
            lw, lh = label_size(os.path.join(a.data_root, label), at)
            if (lw, lh) != (w, h):
                fail(f"{at}: image {image} is {w}×{h} but label {label} is {lw}×{lh}")
        img = c.normalise(rgb)
        if batch and (len(batch) == a.batch_size or batch[0][1].shape != img.shape):
            flush(batch)
            batch = []
        batch.append((os.path.splitext(os.path.basename(image))[0], img))
    if batch:
        flush(batch)
    print(f"wrote {done} predictions to {a.out_dir}")


if __name__ == "__main__":
    main()
