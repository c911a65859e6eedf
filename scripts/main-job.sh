#!/bin/sh
# scripts/main-job.sh BUILD_DIR - the main job (scripts/run.sh demo): the
# document's transfer workflow on real data.
#
# By default, transfer_demo on Fashion-MNIST (Debian's dataset-fashion-mnist):
# a source model learns classes 0-4, then classes 5-9 are learned from 10
# examples each by scratch, parameter transfer, frozen feature extractor and
# structure clone, and a table gives each one's test accuracy and time.
#
# With TL_CIFAR10 and TL_CIFAR100 set to the CIFAR binary archives
# (cifar-10-binary.tar.gz, cifar-100-binary.tar.gz from
# https://www.cs.toronto.edu/~kriz/cifar.html, or the directories holding
# them), it runs the document's own workflow instead: cifar10_train (model
# saved as BUILD_DIR/cifar10.tlm), then cifar100_transfer --scratch.
#
# TL_DEMO_ARGS adds flags to every program run, e.g. "--threads 2 --json"
# or "--epochs 2" (see each program's --help). TL_FASHION_MNIST overrides
# the Fashion-MNIST directory.
set -eu
build=${1:-build}
ex=$build/examples
# OMP_WAIT_POLICY is left to the caller: the main job runs alone, and
# libgomp's default (spin briefly, then sleep) trains fastest then; passive
# waits cost up to 40% with 2 threads (docs/performance.md). Set
# OMP_WAIT_POLICY=passive when other busy processes share the cores.
start=$(date +%s)

if [ -n "${TL_CIFAR10:-}${TL_CIFAR100:-}" ]; then
    if [ -z "${TL_CIFAR10:-}" ] || [ -z "${TL_CIFAR100:-}" ]; then
        echo "main-job: set both TL_CIFAR10 and TL_CIFAR100 to the CIFAR binary archives" >&2
        exit 2
    fi
    echo "main job: CIFAR-10 -> CIFAR-100 (the document's workflow)" >&2
    # shellcheck disable=SC2086 # TL_DEMO_ARGS is a list of flags
    "$ex/cifar10_train" --data "$TL_CIFAR10" --out "$build/cifar10.tlm" ${TL_DEMO_ARGS:-}
    # shellcheck disable=SC2086
    "$ex/cifar100_transfer" --data "$TL_CIFAR100" --model "$build/cifar10.tlm" --scratch ${TL_DEMO_ARGS:-}
else
    echo "main job: transfer learning on Fashion-MNIST (set TL_CIFAR10 and TL_CIFAR100 for the CIFAR workflow)" >&2
    # shellcheck disable=SC2086
    "$ex/transfer_demo" --data "${TL_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}" ${TL_DEMO_ARGS:-}
fi
echo "main job: done in $(($(date +%s) - start)) s" >&2
