#!/usr/bin/env bash
# Builds quiesce and runs every test: Rust lint and tests, Python lint, then the pytest suite on
# every CPython 3.9-3.13 found on this machine (one wheel per interpreter, each in its own venv).
#
#   bash scripts/test.sh                 # everything
#   QUIESCE_PYTHONS="3.9 3.13" bash scripts/test.sh   # a subset of interpreters
#
# Tools (maturin, ruff, pytest) are installed at pinned versions into .venvs/; nothing global.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

MATURIN_VERSION=1.16.0
RUFF_VERSION=0.17.6
PYTEST_VERSION=8.3.5
wanted=${QUIESCE_PYTHONS:-"3.9 3.10 3.11 3.12 3.13"}
required=${QUIESCE_REQUIRED_PYTHONS:-"3.9 3.13"}

find_python() {  # newest patch release of CPython $1: pyenv first, then PATH
    local minor=$1 candidate
    if command -v pyenv >/dev/null 2>&1; then
        candidate=$(ls -d "$(pyenv root)/versions/$minor".*/bin/python 2>/dev/null | sort -V | tail -n 1 || true)
        [ -n "$candidate" ] && { echo "$candidate"; return; }
    fi
    command -v "python$minor" 2>/dev/null || true
}

pythons=()
for minor in $wanted; do
    py=$(find_python "$minor")
    if [ -n "$py" ]; then
        pythons+=("$py")
    elif [[ " $required " == *" $minor "* ]]; then
        echo "error: CPython $minor is required but was not found (pyenv or python$minor on PATH)" >&2
        exit 1
    else
        echo "note: CPython $minor not found; skipping it"
    fi
done

host_python=$(find_python 3.11); host_python=${host_python:-$(command -v python3)}
tools=.venvs/tools
if [ ! -x "$tools/bin/maturin" ] || ! "$tools/bin/maturin" --version | grep -q "$MATURIN_VERSION" \
    || ! "$tools/bin/ruff" --version 2>/dev/null | grep -q "$RUFF_VERSION"; then
    "$host_python" -m venv "$tools"
    "$tools/bin/pip" install -q "maturin==$MATURIN_VERSION" "ruff==$RUFF_VERSION"
fi

echo "== Rust: format, clippy, core tests"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test -p quiesce-core --locked

echo "== Python: ruff"
"$tools/bin/ruff" format --check python tests benches
"$tools/bin/ruff" check python tests benches

echo "== Build one wheel per interpreter"
rm -rf dist
interpreter_args=()
for py in "${pythons[@]}"; do interpreter_args+=(-i "$py"); done
"$tools/bin/maturin" build --release --locked -o dist "${interpreter_args[@]}"

passed=0; failed=0; skipped=0
for py in "${pythons[@]}"; do
    tag=$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    venv=.venvs/$tag
    echo "== pytest on $("$py" --version) ($venv)"
    [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
    "$venv/bin/pip" install -q "pytest==$PYTEST_VERSION"
    "$venv/bin/pip" install -q --force-reinstall --no-deps dist/quiesce-*-"$tag"-*.whl
    report="$root/.venvs/$tag-junit.xml"
    set +e
    # Run from tests/ with importlib mode so `quiesce` comes from the installed wheel, never
    # from the source tree.
    (cd tests && "$root/$venv/bin/python" -m pytest -q -p no:cacheprovider --import-mode=importlib \
        --rootdir "$root" -c "$root/pyproject.toml" --junitxml "$report" .)
    status=$?
    set -e
    counts=$("$venv/bin/python" - "$report" <<'PY'
import sys, xml.etree.ElementTree as ET
suite = ET.parse(sys.argv[1]).getroot()
suite = suite if suite.tag == "testsuite" else suite[0]
tests, fail, err, skip = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
print(tests - fail - err - skip, fail + err, skip)
PY
)
    read -r p f s <<<"$counts"
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); fi
done

echo "quiesce: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
