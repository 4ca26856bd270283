#!/bin/sh
# Run the package fuzzer for FUZZ_SECONDS (default 60): `make fuzz`, or `fuzz/run.sh` directly.
# New interesting inputs go to fuzz/corpus/, crashes to fuzz/crashes/ (both ignored by git); the seeds in
# fuzz/seeds/ are only read. Extra arguments are passed to libFuzzer (e.g. -jobs=2 -workers=2).
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
mkdir -p fuzz/corpus fuzz/crashes
exec "$PYTHON" fuzz/fuzz_package.py \
    -max_total_time="${FUZZ_SECONDS:-60}" \
    -max_len=65536 \
    -timeout=30 \
    -rss_limit_mb=4096 \
    -artifact_prefix=fuzz/crashes/ \
    "$@" fuzz/corpus fuzz/seeds
