# Shared by scripts/test.sh and scripts/conformance.sh (sourced, not run): finding the
# interpreters, the pinned tool venv, and building and installing one wheel per interpreter.

MATURIN_VERSION=1.16.0
RUFF_VERSION=0.17.6
PYTEST_VERSION=8.3.5

find_python() {  # newest patch release of CPython $1: pyenv first, then PATH
    local minor=$1 candidate
    if command -v pyenv >/dev/null 2>&1; then
        candidate=$(ls -d "$(pyenv root)/versions/$minor".*/bin/python 2>/dev/null | sort -V | tail -n 1 || true)
        [ -n "$candidate" ] && { echo "$candidate"; return; }
    fi
    command -v "python$minor" 2>/dev/null || true
}

# find_pythons "WANTED MINORS" "REQUIRED MINORS": sets the array `pythons`.
find_pythons() {
    local wanted=$1 required=$2 minor py
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
}

# Pinned maturin and ruff in .venvs/tools; sets `tools`.
ensure_tools() {
    local host_python
    host_python=$(find_python 3.11); host_python=${host_python:-$(command -v python3)}
    tools=.venvs/tools
    if [ ! -x "$tools/bin/maturin" ] || ! "$tools/bin/maturin" --version | grep -q "$MATURIN_VERSION" \
        || ! "$tools/bin/ruff" --version 2>/dev/null | grep -q "$RUFF_VERSION"; then
        "$host_python" -m venv "$tools"
        "$tools/bin/pip" install -q "maturin==$MATURIN_VERSION" "ruff==$RUFF_VERSION"
    fi
}

# build_wheels PYTHON...: one release wheel per interpreter into dist/.
build_wheels() {
    local py interpreter_args=()
    rm -rf dist
    for py in "$@"; do interpreter_args+=(-i "$py"); done
    "$tools/bin/maturin" build --release --locked -o dist "${interpreter_args[@]}"
}

# venv_with_wheel PYTHON: .venvs/cpXY with pytest and this build's wheel; prints its path.
venv_with_wheel() {
    local py=$1 tag venv
    tag=$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    venv=.venvs/$tag
    [ -x "$venv/bin/python" ] || "$py" -m venv "$venv" >&2
    "$venv/bin/pip" install -q "pytest==$PYTEST_VERSION" >&2
    "$venv/bin/pip" install -q --force-reinstall --no-deps dist/quiesce-*-"$tag"-*.whl >&2
    echo "$venv"
}
