#!/usr/bin/env python3
"""The tl program as a user runs it.

    test_cli.py TL CIFAR10_TRAIN EXAMPLES_DIR

Trains a small model with cifar10_train on a generated Fashion-MNIST-shaped
IDX set (examples/test_examples.py writes it), then: `tl info` on each
format, `tl convert` between checkpoint, safetensors and ONNX (and back),
`tl predict` giving the same predictions and accuracy from every file, and
bad command lines (exit 2) and bad files (exit 1), each with one sentence
on stderr that names what was wrong. Stdlib only.
"""
import os
import subprocess
import sys
import tempfile

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, file=sys.stderr)


def run(exe, args, expect=0, stderr_has=()):
    p = subprocess.run([exe, *args], capture_output=True, text=True, timeout=240)
    what = f"{os.path.basename(exe)} {' '.join(args)}"
    if p.returncode != expect:
        fail(f"{what}: exit {p.returncode}, expected {expect}\n--- stdout\n{p.stdout}--- stderr\n{p.stderr}")
    for text in stderr_has:
        if text not in p.stderr:
            fail(f"{what}: stderr lacks {text!r}:\n{p.stderr}")
    if expect != 0 and len(p.stderr.strip().splitlines()) != 1:
        fail(f"{what}: an error is one line on stderr, got:\n{p.stderr}")
    return p


def expect_in(p, texts, what):
    for text in texts:
        if text not in p.stdout:
            fail(f"{what}: stdout lacks {text!r}:\n{p.stdout}")


def main():
    tl, train, examples = sys.argv[1], sys.argv[2], sys.argv[3]
    sys.path.insert(0, examples)
    from test_examples import idx_set  # the examples' IDX writer

    tmp = tempfile.mkdtemp(prefix="tl-cli-")
    j = lambda name: os.path.join(tmp, name)
    data = j("fashion")
    os.mkdir(data)
    idx_set(data, "train", 400)
    idx_set(data, "t10k", 100)
    subprocess.run([train, "--data", data, "--epochs", "1", "--batch", "32", "--threads", "1", "--out", j("m.tlm")],
                   check=True, capture_output=True, timeout=240)

    # --- help and version ---------------------------------------------------------
    p = run(tl, ["--help"])
    expect_in(p, ["tl info FILE", "tl convert IN OUT", "tl predict MODEL DATA", "Exit status"], "tl --help")
    p = run(tl, ["--version"])
    if not p.stdout.startswith("tl (libtl) "):
        fail(f"tl --version: {p.stdout!r}")

    # --- info on each format, after converting -----------------------------------
    # The document's CNN on 28x28x1: 320 + 18,496 + 16,010 parameters.
    table = ["conv2d (conv2d)", "conv2d_1 (conv2d)", "dense (dense)", "Total params: 34,826"]
    p = run(tl, ["info", j("m.tlm")])
    expect_in(p, ["libtl checkpoint", "Checkpoint (format 1.", "Optimizer: adam"] + table, "tl info m.tlm")
    for out, fmt in (("m.safetensors", "safetensors"), ("m.onnx", "ONNX"), ("k.safetensors", "safetensors")):
        args = ["convert", j("m.tlm"), j(out)] + (["--layout", "keras"] if out.startswith("k") else [])
        p = run(tl, args)
        expect_in(p, [f"({fmt})"], "tl " + " ".join(args))
        p = run(tl, ["info", j(out)])
        expect_in(p, [f": {fmt}", "input (28, 28, 1)"] + table, f"tl info {out}")
    # And back: ONNX and safetensors to checkpoints.
    run(tl, ["convert", j("m.onnx"), j("from_onnx.tlm")])
    run(tl, ["convert", j("m.safetensors"), j("from_st.tlm")])
    run(tl, ["convert", j("m.tlm"), j("folded.onnx"), "--fold-bn", "--opset", "17"])

    # --- predict: the same answers from every file --------------------------------
    outputs = {}
    for name in ("m.tlm", "m.safetensors", "k.safetensors", "m.onnx", "folded.onnx", "from_onnx.tlm",
                 "from_st.tlm"):
        p = run(tl, ["predict", j(name), data, "--show", "20", "--threads", "1"])
        lines = p.stdout.splitlines()
        if len(lines) != 21 or not lines[-1].startswith("accuracy: "):
            fail(f"tl predict {name}: expected 20 predictions and an accuracy line:\n{p.stdout}")
        outputs[name] = p.stdout
    for name, text in outputs.items():
        if text != outputs["m.tlm"]:
            fail(f"tl predict {name} differs from the checkpoint's:\n{text}\nvs\n{outputs['m.tlm']}")
    # An IDX images file with its labels gives the same as the directory.
    p = run(tl, ["predict", j("m.tlm"), os.path.join(data, "t10k-images-idx3-ubyte.gz"), "--labels",
                 os.path.join(data, "t10k-labels-idx1-ubyte.gz"), "--show", "20", "--threads", "1"])
    if p.stdout != outputs["m.tlm"]:
        fail(f"tl predict on IDX files differs from the directory:\n{p.stdout}")

    # --- bad command lines: exit 2 ------------------------------------------------
    run(tl, [], 2, ["a command is needed"])
    run(tl, ["frobnicate"], 2, ["unknown command 'frobnicate'"])
    run(tl, ["info"], 2, ["info takes one FILE"])
    run(tl, ["convert", j("m.tlm")], 2, ["convert needs OUT"])
    run(tl, ["convert", j("m.tlm"), j("x.onnx"), "--bogus"], 2, ["no option --bogus"])
    run(tl, ["convert", j("m.tlm"), j("x.safetensors"), "--layout", "nchw"], 2, ["pytorch or keras, not 'nchw'"])
    run(tl, ["predict", j("m.tlm"), data, "--show", "many"], 2, ["--show needs a whole number", "'many'"])
    run(tl, ["predict", j("m.tlm"), data, "--batch", "0"], 2, ["--batch must be at least 1"])
    run(tl, ["predict", j("m.tlm")], 2, ["predict needs DATA"])

    # --- bad files: exit 1, the sentence names the file ---------------------------
    run(tl, ["info", j("missing.tlm")], 1, ["missing.tlm", "TL_ENOTFOUND"])
    with open(j("m.tlm"), "rb") as f:
        good = f.read()
    with open(j("cut.tlm"), "wb") as f:
        f.write(good[: len(good) // 2])
    run(tl, ["info", j("cut.tlm")], 1, ["cut.tlm", "TL_ETRUNCATED"])
    with open(j("noise.onnx"), "wb") as f:
        f.write(bytes((i * 73 + 11) % 256 for i in range(300)))
    run(tl, ["info", j("noise.onnx")], 1, ["noise.onnx", "byte"])
    run(tl, ["predict", j("m.tlm"), j("no-such-dir")], 1, ["no-such-dir"])
    # A save that fails leaves the previous file as it was.
    with open(j("keep.onnx"), "wb") as f:
        f.write(b"previous")
    run(tl, ["convert", j("m.tlm"), j("keep.onnx"), "--opset", "9"], 1, ["opset"])
    with open(j("keep.onnx"), "rb") as f:
        if f.read() != b"previous":
            fail("tl convert with a bad --opset changed the existing output file")
    run(tl, ["convert", j("m.tlm"), os.path.join(tmp, "no-dir", "x.tlm")], 1, ["no-dir"])

    if failures:
        print(f"{len(failures)} failure(s); files kept in {tmp}", file=sys.stderr)
        return 1
    subprocess.run(["rm", "-rf", tmp])
    return 0


if __name__ == "__main__":
    sys.exit(main())
