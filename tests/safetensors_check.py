#!/usr/bin/env python3
"""Read libtl's safetensors export the way Python's safetensors does, with
nothing but the standard library (struct, json): the 8-byte little-endian
header length, a JSON header of {name: {dtype, shape, data_offsets}} plus a
__metadata__ of strings, and a data buffer the offsets tile exactly. Then
compare every tensor with what the exporter (tests/st_export.c) says it
wrote. Usage: safetensors_check.py ST_EXPORT"""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile


def fail(msg):
    print("safetensors_check: " + msg, file=sys.stderr)
    sys.exit(1)


def read(path):
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        fail("file shorter than 8 bytes")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > 100_000_000 or 8 + n > len(blob):
        fail("bad header length %d" % n)
    if (8 + n) % 8:
        fail("data not 8-byte aligned (header %d bytes)" % n)
    text = blob[8:8 + n].decode("utf-8")
    if not text.startswith("{"):
        fail("header does not start with '{'")
    header = json.loads(text, parse_constant=lambda c: fail("constant " + c))
    data = blob[8 + n:]
    meta = header.pop("__metadata__", {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        fail("__metadata__ must map strings to strings")
    spans = []
    for name, info in header.items():
        if set(info) != {"dtype", "shape", "data_offsets"}:
            fail("%s: fields %s" % (name, sorted(info)))
        if info["dtype"] != "F32":
            fail("%s: dtype %s" % (name, info["dtype"]))
        begin, end = info["data_offsets"]
        count = math.prod(info["shape"])
        if end - begin != 4 * count:
            fail("%s: %d bytes for %d floats" % (name, end - begin, count))
        spans.append((begin, end, name))
    spans.sort()
    at = 0
    for begin, end, name in spans:
        if begin != at:
            fail("%s: begins at %d, expected %d" % (name, begin, at))
        at = end
    if at != len(data):
        fail("tensors cover %d of %d data bytes" % (at, len(data)))
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        values = struct.unpack("<%df" % ((end - begin) // 4), data[begin:end])
        tensors[name] = (info["shape"], values)
    return meta, tensors


def check(exporter, layout, workdir):
    path = os.path.join(workdir, layout + ".safetensors")
    out = subprocess.run([exporter, path, layout], check=True, capture_output=True, text=True).stdout
    meta, tensors = read(path)
    if meta.get("libtl.layout") != layout:
        fail("libtl.layout is %r" % meta.get("libtl.layout"))
    arch = json.loads(meta["libtl.architecture"])
    if arch["input"] != [32, 32, 3] or len(arch["layers"]) != 6:
        fail("architecture %r" % arch)
    seen = 0
    for line in out.splitlines():
        f = line.split()
        if f[0] == "tensor":
            name, shape, count = f[1], [int(x) for x in f[2].split(",")], int(f[3])
            want_sum, want_min, want_max = float(f[4]), float(f[5]), float(f[6])
            if name not in tensors:
                fail("%s missing (have %s)" % (name, sorted(tensors)))
            got_shape, values = tensors[name]
            if got_shape != shape or len(values) != count:
                fail("%s: shape %s, expected %s" % (name, got_shape, shape))
            total = math.fsum(values)
            if abs(total - want_sum) > 1e-9 * max(1.0, abs(want_sum)):
                fail("%s: sum %r, expected %r" % (name, total, want_sum))
            if min(values) != struct.unpack("<f", struct.pack("<f", want_min))[0] or \
               max(values) != struct.unpack("<f", struct.pack("<f", want_max))[0]:
                fail("%s: min/max differ" % name)
            seen += 1
        elif f[0] == "probe":
            name, index, value = f[1], int(f[2]), float(f[3])
            got = tensors[name][1][index]
            if got != struct.unpack("<f", struct.pack("<f", value))[0]:
                fail("%s[%d] = %r, expected %r (layout %s)" % (name, index, got, value, layout))
    if seen != len(tensors) or seen != 6:
        fail("%d tensors described, %d in the file" % (seen, len(tensors)))


def main():
    if len(sys.argv) != 2:
        fail("usage: safetensors_check.py ST_EXPORT")
    with tempfile.TemporaryDirectory() as d:
        for layout in ("keras", "pytorch"):
            check(sys.argv[1], layout, d)
    print("safetensors_check: keras and pytorch exports read by a standard-library reader")
    print("2 passed, 0 failed")


if __name__ == "__main__":
    main()
