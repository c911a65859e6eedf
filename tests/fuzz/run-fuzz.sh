#!/bin/sh
# run-fuzz.sh HARNESS SEEDGEN NAME [SECONDS] - one short libFuzzer run, as a
# meson test: generate the seed corpus with the tests' writers, fuzz for
# SECONDS (default $TL_FUZZ_SECONDS, else 20) from it, print the stats.
# Fails on any crash, leak, sanitizer report or timeout; the input that
# caused it is kept as $TL_FUZZ_ARTIFACTS/fuzz-NAME-crash-... (default: the
# current directory, which is the build directory under meson test).
set -eu
harness=$1
seedgen=$2
name=$3
secs=${4:-${TL_FUZZ_SECONDS:-20}}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
"$seedgen" "$work/seeds"
mkdir "$work/corpus"
max_len=65536
[ "$name" = gzip ] && max_len=140000
# -error_exitcode: libFuzzer's default (77) means "skipped" to meson.
exec "$harness" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -max_len="$max_len" \
    -error_exitcode=1 -timeout_exitcode=1 -print_final_stats=1 \
    -artifact_prefix="${TL_FUZZ_ARTIFACTS:-$PWD}/fuzz-$name-" \
    "$work/corpus" "$work/seeds/$name"
