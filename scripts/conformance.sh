#!/usr/bin/env bash
# The full test_asyncio conformance run: builds quiesce for CPython 3.9 and 3.13 (or
# QUIESCE_PYTHONS), runs every included test_asyncio module on the stock loop, on quiesce.Loop
# with clock="real" and clock="virtual", and the self-check with deliberately broken loops,
# then rewrites conformance/RESULTS.md. Takes about 10 minutes on two cores (7 min measured on 2026-12-04).
#
#   bash scripts/conformance.sh                  # everything, rewrites conformance/RESULTS.md
#   bash scripts/conformance.sh --module test_locks --write /tmp/r.md   # extra run.py options
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

find_pythons "${QUIESCE_PYTHONS:-"3.9 3.13"}" "${QUIESCE_REQUIRED_PYTHONS:-"3.9 3.13"}"
ensure_tools
build_wheels "${pythons[@]}"
args=()
for py in "${pythons[@]}"; do args+=(--python "$root/$(venv_with_wheel "$py")/bin/python"); done
if [ "$#" -eq 0 ]; then set -- --write conformance/RESULTS.md; fi
"${pythons[0]}" conformance/run.py --mode all --jobs 2 --out "$root/.venvs/conformance" "${args[@]}" "$@"
