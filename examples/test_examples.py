#!/usr/bin/env python3
"""Run every workflow example on tiny generated data, as a user would.

    test_examples.py TL_DATA_TOOL EXAMPLE...

CIFAR-10 comes from tl-data-tool (the test suite's CIFAR writer); CIFAR-100
and a Fashion-MNIST-shaped IDX set are written here, in the same formats as
the real downloads. Each example must exit 0, print exactly the expected
JSON lines with the expected keys, and write its model file; bad input must
give a non-zero exit and a message that says what to do. Stdlib only.
"""
import gzip
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET

RESULT_KEYS = {"example", "method", "accuracy", "loss", "epochs", "seconds", "images_per_second",
               "batch", "lr", "seed", "threads"}
DEMO_KEYS = RESULT_KEYS | {"test_accuracy", "train_seconds", "source_classes", "target_classes",
                           "source_epochs", "target_epochs", "per_class", "data"}
COMMON_FLAGS = ["--data", "--epochs", "--batch", "--lr", "--seed", "--threads", "--model", "--out",
                "--json", "--help", "--history", "--plot"]
RECIPE_FLAGS = {"cifar10_train": ["--arch", "--augment", "--schedule", "--early-stop"],
                "cifar100_transfer": ["--arch", "--augment", "--schedule", "--early-stop"],
                "transfer_demo": ["--arch", "--head-lr"]}
HISTORY_HEADER = ("run,epoch,loss,accuracy,val_loss,val_accuracy,learning_rate,seconds,skipped_batches,"
                  "improved,stopped,top_k,top_k_accuracy,val_top_k_accuracy")
SVG = "{http://www.w3.org/2000/svg}"
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, file=sys.stderr)


def run(exe, *args, expect=0):
    """Run an example with one thread; check the exit status."""
    p = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)
    name = os.path.basename(exe)
    ok = p.returncode == 0 if expect == 0 else p.returncode != 0
    if not ok:
        fail(f"{name} {' '.join(args)}: exit {p.returncode}, expected {'0' if expect == 0 else 'non-zero'}\n"
             f"--- stdout\n{p.stdout}--- stderr\n{p.stderr}")
    return p


def json_lines(p, name, methods, keys):
    """stdout must be exactly one JSON object per expected method."""
    lines = p.stdout.splitlines()
    if len(lines) != len(methods):
        fail(f"{name}: {len(lines)} stdout lines, expected {len(methods)}:\n{p.stdout}")
        return []
    out = []
    for line, method in zip(lines, methods):
        try:
            obj = json.loads(line)
        except ValueError as e:
            fail(f"{name}: not JSON ({e}): {line}")
            continue
        missing = keys - obj.keys()
        if missing:
            fail(f"{name}: JSON line lacks {sorted(missing)}: {line}")
        if obj.get("method") != method:
            fail(f"{name}: method {obj.get('method')!r}, expected {method!r}")
        acc = obj.get("accuracy")
        if not isinstance(acc, (int, float)) or not 0 <= acc <= 1:
            fail(f"{name}: accuracy {acc!r} is not in [0, 1]")
        out.append(obj)
    return out


def history_rows(path, who, runs):
    """--history: the header, then one row per epoch of each run, `runs` = [(label, epochs), ...]."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        fail(f"{who}: no history file ({e})")
        return []
    if not lines or lines[0] != HISTORY_HEADER:
        fail(f"{who}: history header {lines[:1]!r}, expected {HISTORY_HEADER!r}")
        return []
    rows = [dict(zip(HISTORY_HEADER.split(","), line.split(","))) for line in lines[1:]]
    expected = [(label, str(e + 1)) for label, n in runs for e in range(n)]
    got = [(r["run"], r["epoch"]) for r in rows]
    if got != expected:
        fail(f"{who}: history rows {got}, expected {expected}")
    for r in rows:
        if len(r) != len(HISTORY_HEADER.split(",")):
            fail(f"{who}: a history row has {len(r)} fields: {r}")
    return rows


def svg_plot(path, who, polylines, legend):
    """--plot: XML that parses, `polylines` lines (a run of two or more finite epochs each), the legend texts."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        fail(f"{who}: the plot is not readable XML ({e})")
        return
    if root.tag != SVG + "svg":
        fail(f"{who}: the plot's root is {root.tag}, not svg")
    n = len(root.findall(f".//{SVG}polyline"))
    if n != polylines:
        fail(f"{who}: {n} polylines in the plot, expected {polylines}")
    texts = [t.text for t in root.iter(SVG + "text") if t.get("class") == "legend"]
    if texts != legend:
        fail(f"{who}: legend {texts}, expected {legend}")
    texts = [t.text or "" for t in root.iter(SVG + "text")]
    for title in ("loss", "accuracy", "learning rate", "epoch"):
        if not any(t.endswith(title) for t in texts):
            fail(f"{who}: the plot has no {title!r} label")


def model_file(path, who):
    if not os.path.isfile(path) or os.path.getsize(path) < 64:
        fail(f"{who}: model file {path} was not written")


# ---- data in the download formats --------------------------------------------

def cifar100_archive(path, train, test):
    """cifar-100-binary.tar.gz: records of coarse byte, fine byte, 3072 pixels."""
    def records(n, salt):
        out = bytearray()
        for i in range(n):
            fine = (i * 7 + salt) % 100
            out += bytes([fine // 5, fine]) + bytes((i * 31 + p * 7 + salt) % 256 for p in range(3072))
        return bytes(out)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (("train.bin", records(train, 1)), ("test.bin", records(test, 2)),
                           ("fine_label_names.txt", b"apple\n")):
            info = tarfile.TarInfo("cifar-100-binary/" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def idx_set(directory, prefix, n):
    """MNIST-layout IDX files: class k has a bright band in rows 2k..2k+2."""
    labels = bytes(i % 10 for i in range(n))
    pixels = bytearray()
    for i, k in enumerate(labels):
        for r in range(28):
            for c in range(28):
                bright = 2 * k <= r < 2 * k + 3
                pixels.append(200 if bright else (i * 13 + r * 5 + c) % 60)
    with gzip.open(os.path.join(directory, prefix + "-images-idx3-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28) + bytes(pixels))
    with gzip.open(os.path.join(directory, prefix + "-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + labels)


def main():
    tool, exes = sys.argv[1], {os.path.basename(e): e for e in sys.argv[2:]}
    tmp = tempfile.mkdtemp(prefix="tl-examples-")
    j = lambda name: os.path.join(tmp, name)
    fast = ["--epochs", "1", "--batch", "32", "--threads", "1"]

    subprocess.run([tool, "gen-cifar10", j("cifar-10-binary.tar.gz"), "64"], check=True, capture_output=True)
    cifar100_archive(j("cifar-100-binary.tar.gz"), 300, 100)
    os.mkdir(j("fashion"))
    idx_set(j("fashion"), "train", 400)
    idx_set(j("fashion"), "t10k", 100)

    # --help documents every common flag, in every example.
    for name, exe in exes.items():
        p = run(exe, "--help")
        for flag in COMMON_FLAGS + RECIPE_FLAGS.get(name, []):
            if flag not in p.stdout:
                fail(f"{name} --help does not document {flag}")

    # The document's workflow: train on CIFAR-10, save, transfer to CIFAR-100.
    c10, c100, m = j("cifar-10-binary.tar.gz"), j("cifar-100-binary.tar.gz"), j("m.tlm")
    p = run(exes["cifar10_train"], "--data", c10, *fast, "--out", m, "--json")
    json_lines(p, "cifar10_train", ["train"], RESULT_KEYS)
    model_file(m, "cifar10_train --out")
    p = run(exes["cifar10_train"], "--data", c10, *fast, "--model", m, "--out", j("m2.tlm"), "--json")
    json_lines(p, "cifar10_train --model (resume)", ["train"], RESULT_KEYS)
    model_file(j("m2.tlm"), "cifar10_train --model --out")

    p = run(exes["cifar100_transfer"], "--data", c100, "--model", m, *fast, "--out", j("t.tlm"), "--scratch",
            "--json")
    json_lines(p, "cifar100_transfer --scratch", ["param_transfer", "scratch"], RESULT_KEYS)
    model_file(j("t.tlm"), "cifar100_transfer --out")
    p = run(exes["feature_extractor"], "--data", c100, "--model", m, *fast, "--out", j("fe.tlm"), "--json")
    json_lines(p, "feature_extractor", ["feature_extractor"], RESULT_KEYS)
    model_file(j("fe.tlm"), "feature_extractor --out")
    p = run(exes["structure_clone"], "--data", c100, "--model", m, *fast, "--out", j("sc.tlm"), "--json")
    json_lines(p, "structure_clone", ["structure_clone"], RESULT_KEYS)
    model_file(j("sc.tlm"), "structure_clone --out")

    # The main job's program, on the tiny IDX set; then again from its saved source model.
    demo = ["--data", j("fashion"), "--source-epochs", "1", "--target-epochs", "2", "--per-class", "5",
            "--batch", "16", "--threads", "1", "--json"]
    methods = ["scratch", "param_transfer", "feature_extractor", "structure_clone"]
    p = run(exes["transfer_demo"], *demo, "--out", j("src.tlm"))
    rows = json_lines(p, "transfer_demo", methods, DEMO_KEYS)
    model_file(j("src.tlm"), "transfer_demo --out")
    if rows and rows[0].get("per_class") != 5:
        fail(f"transfer_demo: per_class {rows[0].get('per_class')!r}, expected 5")
    p = run(exes["transfer_demo"], *demo, "--model", j("src.tlm"), "--source-classes", "0,1,2", "--target-classes",
            "3,4,5,6")
    json_lines(p, "transfer_demo --model", methods, DEMO_KEYS)

    # --head-lr: the feature extractor's head alone gets it (its JSON line says which rate it used); the
    # seed CNN's default is --lr, as the document's workflow always had.
    def head_lr_of(rows):
        return [r.get("head_lr") for r in rows]
    if rows and head_lr_of(rows) != [None, None, 0.001, None]:
        fail(f"transfer_demo: head_lr {head_lr_of(rows)}, expected only feature_extractor's, = --lr 0.001")
    p = run(exes["transfer_demo"], *demo, "--model", j("src.tlm"), "--head-lr", "0.03")
    fast_rows = json_lines(p, "transfer_demo --head-lr", methods, DEMO_KEYS)
    if fast_rows and head_lr_of(fast_rows)[2] != 0.03:
        fail(f"transfer_demo --head-lr 0.03: head_lr {head_lr_of(fast_rows)}")
    if rows and fast_rows:
        for i in (0, 1, 3):  # the other methods do not change
            if (rows[i]["accuracy"], rows[i]["loss"]) != (fast_rows[i]["accuracy"], fast_rows[i]["loss"]):
                fail(f"transfer_demo --head-lr changed {methods[i]}: {rows[i]} vs {fast_rows[i]}")
        if rows[2]["loss"] == fast_rows[2]["loss"]:
            fail(f"transfer_demo --head-lr 0.03 did not change the feature extractor: {fast_rows[2]}")

    # --history and --plot: one row per epoch, a plot that parses; they do not change the training.
    p = run(exes["cifar10_train"], "--data", c10, *fast, "--epochs", "2", "--out", "", "--json",
            "--history", j("h.csv"), "--plot", j("h.svg"))
    plain = run(exes["cifar10_train"], "--data", c10, *fast, "--epochs", "2", "--out", "", "--json")
    a, b = json_lines(p, "cifar10_train --history", ["train"], RESULT_KEYS), json_lines(plain, "cifar10_train", ["train"], RESULT_KEYS)
    if a and b and (a[0]["accuracy"], a[0]["loss"]) != (b[0]["accuracy"], b[0]["loss"]):
        fail(f"cifar10_train: --history/--plot changed the result: {a[0]} vs {b[0]}")
    rows = history_rows(j("h.csv"), "cifar10_train --history", [("cifar10", 2)])
    if rows and any(r["val_loss"] or r["val_accuracy"] for r in rows):
        fail(f"cifar10_train --history: validation figures without a validation set: {rows}")
    # 10 classes: fit measures top-5 by default (the columns appended last).
    if rows and any(r["top_k"] != "5" or not 0 <= float(r["top_k_accuracy"] or -1) <= 1 or r["val_top_k_accuracy"]
                    for r in rows):
        fail(f"cifar10_train --history: top-5 columns wrong: {rows}")
    svg_plot(j("h.svg"), "cifar10_train --plot", 3, ["train", "learning rate"])  # loss, accuracy, lr
    run(exes["cifar10_train"], "--data", c10, *fast, "--out", "", "--plot", j("one.svg"))
    svg_plot(j("one.svg"), "cifar10_train --plot, 1 epoch", 0, ["train", "learning rate"])  # dots only

    # The recipe: augmentation, a cosine schedule and early stopping on a 10% validation split.
    p = run(exes["cifar10_train"], "--data", c10, *fast, "--epochs", "3", "--out", "", "--json", "--augment",
            "--schedule", "cosine", "--early-stop", "5", "--history", j("r.csv"), "--plot", j("r.svg"))
    json_lines(p, "cifar10_train --augment --schedule cosine --early-stop 5", ["train"], RESULT_KEYS)
    rows = history_rows(j("r.csv"), "cifar10_train recipe", [("cifar10", 3)])
    rates = [float(r["learning_rate"]) for r in rows]
    if rows and not (rates[0] > rates[1] > rates[2]):  # after the first epoch's warm-up, down to 0
        fail(f"cifar10_train --schedule cosine: learning rates {rates}")
    if rows and any(not r["val_accuracy"] or r["improved"] not in ("0", "1") for r in rows):
        fail(f"cifar10_train --early-stop: no validation figures or early-stopping marks: {rows}")
    if "held-out" not in p.stderr:
        fail(f"cifar10_train --early-stop does not say what it held out:\n{p.stderr}")
    svg_plot(j("r.svg"), "cifar10_train recipe --plot", 5, ["train", "validation", "learning rate"])
    # Patience 1: fit may stop before --epochs; the JSON epochs and the history say how many ran.
    p = run(exes["cifar100_transfer"], "--data", c100, "--model", m, *fast, "--epochs", "4", "--early-stop", "1",
            "--json", "--history", j("e.csv"))
    rows = json_lines(p, "cifar100_transfer --early-stop 1", ["param_transfer"], RESULT_KEYS)
    if rows:
        n = rows[0]["epochs"]
        hist = history_rows(j("e.csv"), "cifar100_transfer --early-stop 1", [("param_transfer", n)])
        if hist and n < 4 and hist[-1]["stopped"] != "1":
            fail(f"cifar100_transfer --early-stop 1: {n} epochs but the last row is not marked stopped: {hist}")
    for sched, changes in (("step", True), ("onecycle", True), ("none", False)):
        run(exes["cifar10_train"], "--data", c10, *fast, "--epochs", "4", "--out", "", "--schedule", sched,
            "--history", j("s.csv"))
        rows = history_rows(j("s.csv"), f"cifar10_train --schedule {sched}", [("cifar10", 4)])
        if rows and (len({r["learning_rate"] for r in rows}) > 1) != changes:
            fail(f"cifar10_train --schedule {sched}: learning rates {[r['learning_rate'] for r in rows]}")

    # cifar10_train on a directory of MNIST-format files (Fashion-MNIST): 28 x 28 x 1 models, the recipe too.
    p = run(exes["cifar10_train"], "--data", j("fashion"), *fast, "--out", "", "--json", "--augment",
            "--schedule", "cosine")
    json_lines(p, "cifar10_train on Fashion-MNIST", ["train"], RESULT_KEYS)
    if "Fashion-MNIST: 400 training and 100 test images" not in p.stderr + p.stdout:
        fail(f"cifar10_train on Fashion-MNIST does not say what it loaded:\n{p.stderr}")
    p = run(exes["cifar10_train"], "--data", j("fashion"), *fast, "--arch", "resnet20", "--out", "")

    # --arch resnet20: CIFAR-10, then every layer but the head transferred to CIFAR-100; the main job too.
    p = run(exes["cifar10_train"], "--data", c10, *fast, "--arch", "resnet20", "--out", j("r20.tlm"), "--json")
    json_lines(p, "cifar10_train --arch resnet20", ["train"], RESULT_KEYS)
    model_file(j("r20.tlm"), "cifar10_train --arch resnet20 --out")
    p = run(exes["cifar100_transfer"], "--data", c100, "--model", j("r20.tlm"), *fast, "--arch", "resnet20",
            "--json", "--history", j("t.csv"))
    json_lines(p, "cifar100_transfer --arch resnet20", ["param_transfer"], RESULT_KEYS)
    history_rows(j("t.csv"), "cifar100_transfer --history", [("param_transfer", 1)])
    for needle in ("layer3.2.conv2", "copied"):
        if needle not in p.stderr:
            fail(f"cifar100_transfer --arch resnet20: the transfer report lacks {needle!r}:\n{p.stderr}")
    fc = [line for line in p.stderr.splitlines() if line.split()[:1] == ["fc"]]
    if len(fc) != 1 or "not selected" not in fc[0]:
        fail(f"cifar100_transfer --arch resnet20: the head fc should be 'not selected':\n{p.stderr}")
    p = run(exes["cifar100_transfer"], "--data", c100, "--model", m, *fast, "--arch", "resnet20", expect=1)
    if "TL_E" not in p.stderr:
        fail(f"cifar100_transfer --arch resnet20 with a seed CNN file: no libtl status:\n{p.stderr}")
    p = run(exes["transfer_demo"], *demo, "--arch", "resnet20", "--history", j("d.csv"), "--plot", j("d.svg"))
    rn = json_lines(p, "transfer_demo --arch resnet20", methods, DEMO_KEYS)
    if rn and rn[2].get("head_lr") != 0.01:  # a zoo network's default: 10 x --lr
        fail(f"transfer_demo --arch resnet20: feature_extractor head_lr {rn[2].get('head_lr')!r}, expected 0.01")
    history_rows(j("d.csv"), "transfer_demo --history", [("source", 1)] + [(name, 2) for name in methods])
    svg_plot(j("d.svg"), "transfer_demo --plot", 4 * 3, ["source"] + methods)  # source: 1 epoch, dots only

    # Missing data: a non-zero exit, the path looked for, and where to get the data.
    p = run(exes["cifar10_train"], "--data", j("nowhere/cifar-10-binary.tar.gz"), *fast, "--out", "", expect=1)
    for needle in ("nowhere/cifar-10-binary.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar.html",
                   "cifar-10-binary.tar.gz"):
        if needle not in p.stderr:
            fail(f"cifar10_train with missing data: message lacks {needle!r}:\n{p.stderr}")
    os.mkdir(j("empty"))
    for name in ("cifar100_transfer", "feature_extractor", "structure_clone"):
        p = run(exes[name], "--data", j("empty"), "--model", m, *fast, expect=1)
        for needle in ("cifar-100-binary.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar.html", j("empty")):
            if needle not in p.stderr:
                fail(f"{name} with missing data: message lacks {needle!r}:\n{p.stderr}")
        p = run(exes[name], "--data", c100, "--model", j("missing.tlm"), *fast, expect=1)
        if "missing.tlm" not in p.stderr:
            fail(f"{name} with a missing model file: message lacks the file name:\n{p.stderr}")
    p = run(exes["transfer_demo"], "--data", j("no-fashion"), expect=1)
    if "dataset-fashion-mnist" not in p.stderr or "no-fashion" not in p.stderr:
        fail(f"transfer_demo with missing data: unhelpful message:\n{p.stderr}")

    # A damaged model file is refused with libtl's status and sentence.
    with open(m, "rb") as f:
        head = f.read(200)
    with open(j("cut.tlm"), "wb") as f:
        f.write(head)
    p = run(exes["cifar100_transfer"], "--data", c100, "--model", j("cut.tlm"), *fast, expect=1)
    if "TL_E" not in p.stderr or "cut.tlm" not in p.stderr:
        fail(f"cifar100_transfer with a truncated model: message lacks the status or file:\n{p.stderr}")

    # Bad flags: exit 2 and a message naming the flag.
    for args, needle in ((["--epochs", "abc"], "--epochs"), (["--epochs", "-1"], "--epochs"),
                         (["--lr", "0"], "--lr"), (["--batch", "0"], "--batch"), (["--threads"], "--threads"),
                         (["--seed", "99999999999999999999999"], "--seed"), (["--bogus"], "--bogus"),
                         (["--source-classes", "1,1"], "--source-classes"), (["--per-class", "x"], "--per-class"),
                         (["--bogus"], "unknown flag '--bogus'"), (["--epoch", "3"], "did you mean --epochs"),
                         (["--thread=2"], "--threads"), (["--json=1"], "--json takes no value"),
                         (["--arch", "vgg"], "--arch"), (["--augment"], "unknown flag '--augment'"),
                         (["--history", ""], "--history"), (["--histroy", "h.csv"], "did you mean --history"),
                         (["--head-lr", "0"], "--head-lr"), (["--head-lr", "fast"], "--head-lr"),
                         (["--head-lr"], "--head-lr"), (["--head-rl", "0.1"], "did you mean --head-lr")):
        p = run(exes["transfer_demo"], *args, expect=1)
        if p.returncode != 2 or needle not in p.stderr:
            fail(f"transfer_demo {' '.join(args)}: exit {p.returncode}, stderr {p.stderr!r}")
    for args, needle in ((["--arch", "vgg"], "--arch"), (["--schedule", "bogus"], "--schedule"),
                         (["--early-stop", "0"], "--early-stop"), (["--early-stop", "x"], "--early-stop"),
                         (["--augment=1"], "--augment takes no value"), (["--schedul", "step"], "--schedule"),
                         (["--plot"], "--plot")):
        p = run(exes["cifar10_train"], "--data", c10, *args, expect=1)
        if p.returncode != 2 or needle not in p.stderr:
            fail(f"cifar10_train {' '.join(args)}: exit {p.returncode}, stderr {p.stderr!r}")

    if failures:
        print(f"{len(failures)} failure(s); files kept in {tmp}", file=sys.stderr)
        return 1
    shutil.rmtree(tmp)
    print("all examples passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
