#!/usr/bin/env python3
"""compare_builds.py NEW_BUILD OLD_BUILD [--pairs N] [--threads T] [-- tl-bench flags]

Before/after speed of two libtl build directories (e.g. this tree and a
worktree of an older commit, each built with meson): runs NEW's and OLD's
bench/tl-bench alternately, NEW OLD NEW OLD ..., each against its own
lib/, and prints for every figure the medians and the median of the
per-pair ratios NEW/OLD (pairing keeps a ratio meaningful while a shared
machine drifts). sgemm_gflops is BLIS in both builds: how far its ratio
strays from 1 shows the noise of the run.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

KEYS = ["train_img_s", "infer_img_s", "infer_img_s_b256", "latency_b1_ms", "frozen_train_img_s",
        "head_train_img_s", "sgemm_gflops", "peak_rss_mib"]


def run(build, threads, extra):
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(build, "lib"), OMP_WAIT_POLICY="passive")
    cmd = [os.path.join(build, "bench", "tl-bench"), "--threads", str(threads), "--seconds", "1", "--reps", "3",
           "--json"] + extra
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("new")
    ap.add_argument("old")
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("extra", nargs="*", help="more tl-bench flags, after --")
    # intermixed: the build directories may come before or after --pairs / --threads
    a = ap.parse_intermixed_args()
    res = {a.new: [], a.old: []}
    for i in range(a.pairs):
        for build in (a.new, a.old):
            res[build].append(run(build, a.threads, a.extra))
        print(f"pair {i + 1}: new {res[a.new][-1]['train_img_s']:.0f} img/s, old {res[a.old][-1]['train_img_s']:.0f}",
              file=sys.stderr, flush=True)
    print(f"threads {a.threads}, {a.pairs} pairs; new = {a.new}, old = {a.old}")
    for k in KEYS:
        vn = [r[k] for r in res[a.new]]
        vo = [r[k] for r in res[a.old]]
        ratios = [x / y for x, y in zip(vn, vo)]
        print(f"{k:20s} new {statistics.median(vn):10.2f}  old {statistics.median(vo):10.2f}  "
              f"new/old {statistics.median(ratios):.3f} (pairs {min(ratios):.3f} .. {max(ratios):.3f})")


if __name__ == "__main__":
    main()
