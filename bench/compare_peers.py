#!/usr/bin/env python3
"""compare_peers.py BUILD [--models resnet20,mobilenetv2] [--rounds 3] [--threads 1] [--peers DIR] [--ort NODE_MODULES]
                 [--omp-wait passive|default]

libtl beside PyTorch and ONNX Runtime, side by side: for every model, rounds
of libtl's tl-bench, then torch_backbones.py (training, inference at batch 64,
batch-1 latency), then ort_infer.js on the model torch_backbones.py exported
(inference and latency), one after the other, with the same malloc settings
(torch_backbones.py's docstring) for all three. Prints each round's figures,
then the medians and the medians of the per-round ratios (pairing keeps a
ratio meaningful while a shared machine drifts). A peer that is missing is
left out (its columns say so).

OpenMP's threads (libtl's and PyTorch's) sleep between parallel regions
(OMP_WAIT_POLICY=passive), as on a shared machine; --omp-wait default
leaves libgomp's default, spinning a while before sleeping - as ONNX
Runtime's own thread pool does in either case - which matters for
batch-1 latency on several threads.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

MALLOC = {"MALLOC_MMAP_THRESHOLD_": "2147483648", "MALLOC_TRIM_THRESHOLD_": "17179869184",
          "MALLOC_TOP_PAD_": "536870912"}


def run_json(cmd, env):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build")
    ap.add_argument("--models", default="resnet20,mobilenetv2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--peers", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                     "shared", "peers"))
    ap.add_argument("--ort", default="/work/npm-ort/node_modules")
    ap.add_argument("--omp-wait", choices=("passive", "default"), default="passive")
    a = ap.parse_args()
    env = dict(os.environ, **MALLOC)
    env.pop("OMP_WAIT_POLICY", None)
    if a.omp_wait == "passive":
        env["OMP_WAIT_POLICY"] = "passive"
    lt_env = dict(env, LD_LIBRARY_PATH=os.path.join(a.build, "lib"))
    ort_env = dict(env, NODE_PATH=a.ort)
    torch_py = os.path.join(a.peers, "torch_backbones.py")
    ort_js = os.path.join(a.peers, "ort_infer.js")
    have_torch = os.path.exists(torch_py) and os.path.exists("/usr/bin/python3")
    have_ort = have_torch and os.path.isdir(a.ort) and os.path.exists(ort_js)
    tmp = tempfile.mkdtemp(prefix="tl-peers-")
    t = str(a.threads)
    for model in a.models.split(","):
        onnx = os.path.join(tmp, model + ".onnx")
        if have_ort:
            subprocess.run(["/usr/bin/python3", torch_py, "--model", model, "--onnx", onnx], env=env, check=True,
                           capture_output=True)
        rows = []
        for r in range(a.rounds):
            row = {"libtl": run_json([os.path.join(a.build, "bench", "tl-bench"), "--model", model, "--threads", t,
                                      "--seconds", "2", "--reps", "3", "--json"], lt_env)}
            if have_torch:
                row["torch"] = run_json(["/usr/bin/python3", torch_py, "--model", model, "--threads", t, "--json"],
                                        env)
            if have_ort:
                row["ort"] = run_json(["node", ort_js, onnx, "--threads", t], ort_env)
            rows.append(row)
            print(f"{model} round {r + 1}: " + "; ".join(
                f"{k} train {v.get('train_img_s', '-')} infer {v['infer_img_s']} lat {v['latency_b1_ms']}"
                for k, v in row.items()), flush=True)
        lt = rows[0]["libtl"]
        print(f"\n{model}: {a.threads} thread(s), {a.rounds} rounds, OpenMP wait {a.omp_wait}; params libtl {lt['params']}"
              + (f", PyTorch {rows[0]['torch']['params']}" if have_torch else "")
              + f"; {lt['train_gflops'] / lt['train_img_s'] * 1e3:.1f} MFLOP per training image")

        def med(peer, key):
            return statistics.median(r[peer][key] for r in rows)

        def ratio(peer, key, inverse=False):
            v = [(r[peer][key] / r["libtl"][key]) if inverse else (r["libtl"][key] / r[peer][key]) for r in rows]
            return f"{statistics.median(v):.2f} ({min(v):.2f}..{max(v):.2f})"

        for key, label, inv in (("train_img_s", "training img/s", False), ("infer_img_s", "inference img/s, b64", False),
                                ("latency_b1_ms", "latency b1 ms", True)):
            line = f"  {label:22s} libtl {med('libtl', key):9.1f}"
            if have_torch:
                line += f"  torch {med('torch', key):9.1f}  libtl/torch {ratio('torch', key, inv)}"
            if have_ort and key != "train_img_s":
                line += f"  ort {med('ort', key):9.1f}  libtl/ort {ratio('ort', key, inv)}"
            print(line)
        print(f"  frozen-base training img/s {med('libtl', 'frozen_train_img_s'):.1f} "
              f"({statistics.median(r['libtl']['frozen_train_img_s'] / r['libtl']['train_img_s'] for r in rows):.2f}"
              f"x full); peak RSS {med('libtl', 'peak_rss_mib'):.0f} MiB\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
