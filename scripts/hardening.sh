#!/bin/sh
# scripts/hardening.sh [asan|fuzz|abi|all] - the hardening checks that
# `scripts/run.sh test` runs after the normal test suite (docs/hardening.md):
#
#   asan  the whole suite (unit, slow, build, examples) built with
#         AddressSanitizer + UndefinedBehaviorSanitizer (gcc), leaks
#         included; TL_TEST_REDUCED makes the slowest learning tests smaller
#   fuzz  every libFuzzer harness (clang) for $TL_FUZZ_SECONDS (default 20)
#   abi   scripts/check-abi.sh: exported symbols vs headers, abidiff vs the
#         committed baseline
#
# Build directories: ${BUILD_DIR:-build}-asan, -fuzz, -abi.
set -eu
cd "$(dirname "$0")/.."
what=${1:-all}
base=${BUILD_DIR:-build}

setup() { # setup DIR OPTIONS...: configure once, reconfigure later
    dir=$1
    shift
    if [ -f "$dir/build.ninja" ]; then
        meson setup --reconfigure "$dir" >/dev/null
    else
        meson setup "$dir" "$@" >/dev/null
    fi
}

run_asan() {
    dir=$base-asan
    t0=$(date +%s)
    setup "$dir" -Db_sanitize=address,undefined -Db_lundef=false --buildtype=debugoptimized -Dbench=false \
        -Ddocs=disabled
    ninja -C "$dir" >/dev/null
    # halt_on_error: UBSan only prints by default, which a passing test would
    # hide. The suites' own timeouts are for optimised builds. ONNX Runtime
    # for node is where run.sh installed it, beside the regular build.
    ort_modules=$(cd "$(dirname "$base")" && pwd)/$(basename "$base")/peers/node_modules
    NODE_PATH=${NODE_PATH:+$NODE_PATH:}$ort_modules \
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:check_initialization_order=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
    TL_TEST_REDUCED=1 CK_TIMEOUT_MULTIPLIER=4 OMP_WAIT_POLICY=passive \
        meson test -C "$dir" --print-errorlogs --num-processes 2 --timeout-multiplier 4
    echo "hardening: the whole suite passed under ASan + UBSan in $(($(date +%s) - t0)) s"
}

run_fuzz() {
    dir=$base-fuzz
    cc=${FUZZ_CC:-}
    if [ -z "$cc" ]; then
        for c in clang-14 clang; do
            command -v "$c" >/dev/null && { cc=$c; break; }
        done
    fi
    [ -n "$cc" ] || { echo "hardening: clang is missing (apt-get install clang-14 libclang-rt-14-dev)" >&2; exit 1; }
    t0=$(date +%s)
    if [ ! -f "$dir/build.ninja" ]; then
        CC=$cc meson setup "$dir" -Dfuzzing=true -Db_sanitize=address,undefined -Db_lundef=false \
            --buildtype=debugoptimized -Dtests=disabled -Dexamples=false -Dbench=false -Ddocs=disabled >/dev/null
    fi
    ninja -C "$dir" >/dev/null
    TL_FUZZ_SECONDS=${TL_FUZZ_SECONDS:-20} meson test -C "$dir" --suite fuzz --print-errorlogs --num-processes 2
    # Executions per harness, from each run's final statistics.
    for log in "$dir"/meson-logs/testlog.txt; do
        awk '/^test:/ { name = $NF } /stat::number_of_executed_units/ { print "hardening: " name ": " $2 " executions" }' "$log"
    done
    echo "hardening: fuzz smoke passed in $(($(date +%s) - t0)) s"
}

run_abi() {
    t0=$(date +%s)
    ABI_BUILD_DIR=$base-abi scripts/check-abi.sh
    echo "hardening: ABI check passed in $(($(date +%s) - t0)) s"
}

case "$what" in
asan) run_asan ;;
fuzz) run_fuzz ;;
abi) run_abi ;;
all)
    run_abi
    run_asan
    run_fuzz
    ;;
*)
    echo "usage: $0 [asan|fuzz|abi|all]" >&2
    exit 2
    ;;
esac
