#!/usr/bin/env python3
"""Runs an exported ONNX model with ONNX Runtime on the tensor `input` of a safetensors
file and writes every output (as `output_<name>`) to another safetensors file, so tests
compare it with `segzoo forward`. Needs only numpy and onnxruntime (the project's .venv).

usage: onnx_run.py MODEL.onnx INPUT.safetensors OUTPUT.safetensors [--meta META.json]
"""
import json
import struct
import sys

import numpy as np
import onnxruntime as ort

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "F16": np.float16}


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        t = np.ascontiguousarray(t, dtype=np.float32)
        raw = t.tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main(argv):
    if len(argv) not in (4, 6):
        sys.exit(__doc__)
    model, inp, outp = argv[1:4]
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    x = read_safetensors(inp)["input"].astype(np.float32)
    names = [o.name for o in sess.get_outputs()]
    outs = sess.run(names, {sess.get_inputs()[0].name: x})
    write_safetensors(outp, {f"output_{n}": o for n, o in zip(names, outs)})
    if len(argv) == 6 and argv[4] == "--meta":
        meta = dict(sess.get_modelmeta().custom_metadata_map)
        meta["__inputs__"] = json.dumps({i.name: [str(d) for d in i.shape] for i in sess.get_inputs()})
        meta["__outputs__"] = json.dumps({o.name: [str(d) for d in o.shape] for o in sess.get_outputs()})
        with open(argv[5], "w") as f:
            json.dump(meta, f)


if __name__ == "__main__":
    main(sys.argv)
