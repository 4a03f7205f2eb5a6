#!/usr/bin/env bash
# Benchmarks quiesce.Loop (virtual and real clock) beside stock asyncio, uvloop and rloop, interleaved
# in one process run per interpreter (CPython 3.11 and 3.13 by default), plus instructions per
# operation (callgrind), memory per pending timer and exploration (runs to first failure per
# policy, cost per run), then the Rust core's micro-benchmarks. Writes benches/results/*.md.
#
#   bash scripts/bench.sh                         # everything (about 40 minutes)
#   QUIESCE_PYTHONS=3.13 bash scripts/bench.sh --quick   # a smoke run; options go to bench_loops.py
#
# Timings move +-30 % on a shared machine: compare the ratios within one run, not across runs.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
UVLOOP_VERSION=0.23.0
RLOOP_VERSION=0.5.0

find_pythons "${QUIESCE_PYTHONS:-"3.11 3.13"}" ""
ensure_tools
build_wheels "${pythons[@]}"
mkdir -p benches/results
for py in "${pythons[@]}"; do
    venv=$(venv_with_wheel "$py")
    "$venv/bin/pip" install -q "uvloop==$UVLOOP_VERSION"
    loops=asyncio,uvloop,quiesce,quiesce-real
    # rloop has wheels for some interpreters only: benchmarked where it installs.
    if "$venv/bin/pip" install -q "rloop==$RLOOP_VERSION"; then
        loops=asyncio,uvloop,rloop,quiesce,quiesce-real
    else
        echo "note: rloop $RLOOP_VERSION does not install on $("$py" --version); left out"
    fi
    tag=${venv##*/}
    echo "== $("$py" --version): loops"
    "$venv/bin/python" benches/bench_loops.py "$@" | tee "benches/results/loops-$tag.md"
    echo "== $("$py" --version): memory"
    "$venv/bin/python" benches/bench_memory.py | tee "benches/results/memory-$tag.md"
    echo "== $("$py" --version): instructions per operation (callgrind)"
    "$venv/bin/python" benches/bench_instructions.py --loops "$loops" \
        | tee "benches/results/instructions-$tag.md"
    echo "== $("$py" --version): exploration"
    "$venv/bin/python" benches/bench_explore.py --seeds 20 | tee "benches/results/explore-$tag.md"
done
if [ "$#" -eq 0 ]; then
    echo "== Rust core micro-benchmarks (criterion)"
    cargo bench -p quiesce-core --locked -- --output-format bencher 2>/dev/null | grep "^test " \
        | tee benches/results/core.txt
fi
