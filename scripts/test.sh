#!/usr/bin/env bash
# Builds quiesce and runs every test: Rust lint and tests, Python lint, the pytest suite on
# every CPython 3.9-3.15 found on this machine (pyenv first, then python3.X on PATH; one wheel
# per interpreter, each in its own venv), then, on the oldest and newest of them, mypy on the
# package, the tests_interop/ recipes (pytest-asyncio and anyio suites run on quiesce) and the
# fast subset of the test_asyncio conformance run. Interpreters not found are named and
# skipped; one is enough.
#
#   bash scripts/test.sh                                        # everything found
#   QUIESCE_PYTHONS="3.9 3.13" bash scripts/test.sh             # a subset of interpreters
#   QUIESCE_REQUIRED_PYTHONS="3.9 3.13" bash scripts/test.sh    # fail if one of these is missing
#   QUIESCE_CONFORMANCE=0 bash scripts/test.sh                  # without the conformance subset
#   QUIESCE_INTEROP=0 bash scripts/test.sh                      # without the tests_interop/ runs
#
# Tools (maturin, ruff, mypy, pytest) are installed at pinned versions into .venvs/; nothing
# global.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

find_pythons "${QUIESCE_PYTHONS:-$SUPPORTED_PYTHONS}" "${QUIESCE_REQUIRED_PYTHONS:-}"
ensure_tools
# clippy builds the binding crate, and PyO3's build script needs an interpreter (python3 on
# PATH by default, which a machine with only python3.X lacks).
export PYO3_PYTHON=${PYO3_PYTHON:-${pythons[0]}}

echo "== Rust: format, clippy, core tests"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test -p quiesce-core --locked

echo "== Python: ruff"
"$tools/bin/ruff" format --check python tests tests_interop benches conformance
"$tools/bin/ruff" check python tests tests_interop benches conformance

echo "== Build one wheel per interpreter"
build_wheels "${pythons[@]}"

passed=0; failed=0; skipped=0
venvs=()
for py in "${pythons[@]}"; do
    venv=$(venv_with_wheel "$py")
    venvs+=("$venv")
    echo "== pytest on $("$py" --version) ($venv)"
    pytest_started=$SECONDS
    report="$root/$venv-junit.xml"
    set +e
    # Run from tests/ with importlib mode so `quiesce` comes from the installed wheel, never
    # from the source tree.
    (cd tests && "$root/$venv/bin/python" -m pytest -q -p no:cacheprovider --import-mode=importlib \
        --rootdir "$root" -c "$root/pyproject.toml" --junitxml "$report" .)
    status=$?
    set -e
    echo "   pytest on $("$py" --version): $((SECONDS - pytest_started)) s"
    if [ -f "$report" ]; then counts=$(junit_counts "$venv/bin/python" "$report"); else counts="0 0 0"; fi
    read -r p f s <<<"$counts"
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); fi
done

# The package's type hints, checked against the oldest and newest interpreter's stdlib and
# pytest (what a user type-checking code that uses quiesce gets).
mypy_status=0
ends=("${venvs[0]}")
[ "${#venvs[@]}" -gt 1 ] && ends+=("${venvs[${#venvs[@]}-1]}")
for venv in "${ends[@]}"; do
    version=$("$venv/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    echo "== mypy, Python $version"
    (cd python && "$root/$tools/bin/mypy" --python-executable "$root/$venv/bin/python" \
        --python-version "$version" -p quiesce) || mypy_status=1
done
[ "$mypy_status" -eq 0 ] || failed=$((failed + 1))

# The hand-written stub of the native module against the module itself (mypy's stubtest
# imports it, so it runs on the test venv of the tools' own interpreter, when tested).
tools_tag=$("$tools/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
stub_venv=".venvs/$tools_tag"
if [ -d "$stub_venv" ]; then
    echo "== stubtest quiesce._core (on $tools_tag)"
    site=$("$stub_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    (cd /tmp && PYTHONPATH="$site" "$root/$tools/bin/python" -m mypy.stubtest quiesce._core \
        --allowlist "$root/scripts/stubtest-allowlist.txt") || failed=$((failed + 1))
else
    echo "note: stubtest skipped: the tools run on $tools_tag, which is not among the interpreters tested"
fi

if [ "${QUIESCE_INTEROP:-1}" != "0" ]; then
    # Oldest and newest interpreter: existing pytest-asyncio (1.x, 0.2x) and anyio suites run
    # unchanged on quiesce through the conftest.py recipes in tests_interop/.
    interop_pys=("${pythons[0]}")
    [ "${#pythons[@]}" -gt 1 ] && interop_pys+=("${pythons[${#pythons[@]}-1]}")
    for py in "${interop_pys[@]}"; do run_interop_recipes "$py"; done
    echo "interop recipes: $interop_passed passed, $interop_failed failed, $interop_skipped skipped"
    passed=$((passed + interop_passed)); failed=$((failed + interop_failed))
    skipped=$((skipped + interop_skipped))
fi

conformance_status=0
if [ "${QUIESCE_CONFORMANCE:-1}" != "0" ]; then
    # Oldest and newest interpreter: stock vs quiesce (both clocks) and the self-check.
    ends=("${venvs[0]}")
    [ "${#venvs[@]}" -gt 1 ] && ends+=("${venvs[${#venvs[@]}-1]}")
    args=()
    for venv in "${ends[@]}"; do args+=(--python "$venv/bin/python"); done
    echo "== test_asyncio conformance, fast subset (${ends[*]})"
    set +e
    "${venvs[0]}/bin/python" conformance/run.py --fast --mode all --jobs 2 \
        --out "$root/.venvs/conformance-fast" --write "$root/.venvs/conformance-fast.md" "${args[@]}"
    conformance_status=$?
    set -e
fi

echo "quiesce: $passed passed, $failed failed, $skipped skipped (CPython tested: $found_versions)"
if [ ${#missing_pythons[@]} -gt 0 ]; then
    echo "not tested (not found): CPython ${missing_pythons[*]}"
fi
if [ "${QUIESCE_CONFORMANCE:-1}" != "0" ]; then
    if [ "$conformance_status" -eq 0 ]; then
        echo "conformance (fast subset): ok, see .venvs/conformance-fast.md"
    else
        echo "conformance (fast subset): FAILED, see the lines above (CHECK FAILED, or why it could not run) and .venvs/conformance-fast.md"
    fi
fi
[ "$failed" -eq 0 ] && [ "$conformance_status" -eq 0 ]
