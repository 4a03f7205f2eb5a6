# Shared by scripts/test.sh and scripts/conformance.sh (sourced, not run): finding the
# interpreters, the pinned tool venv, and building and installing one wheel per interpreter.

MATURIN_VERSION=1.16.0
RUFF_VERSION=0.17.6
MYPY_VERSION=1.15.0
PYTEST_VERSION=8.3.5

find_python() {  # newest patch release of CPython $1: pyenv first, then PATH
    local minor=$1 candidate
    if command -v pyenv >/dev/null 2>&1; then
        candidate=$(ls -d "$(pyenv root)/versions/$minor".*/bin/python 2>/dev/null | sort -V | tail -n 1 || true)
        [ -n "$candidate" ] && { echo "$candidate"; return; }
    fi
    command -v "python$minor" 2>/dev/null || true
}

# Every CPython quiesce supports, oldest first.
SUPPORTED_PYTHONS="3.9 3.10 3.11 3.12 3.13 3.14 3.15"

# find_pythons "WANTED MINORS" "REQUIRED MINORS": sets the array `pythons` to the wanted
# interpreters found (`found_versions`: their versions), and `missing_pythons` to the wanted
# ones that were not. A required one
# that is missing is an error (CI requires all; a developer's machine needs only one), and so
# is finding none at all.
find_pythons() {
    local wanted=$1 required=$2 minor py
    pythons=(); missing_pythons=()
    for minor in $wanted; do
        py=$(find_python "$minor")
        if [ -n "$py" ]; then
            pythons+=("$py")
        elif [[ " $required " == *" $minor "* ]]; then
            echo "error: CPython $minor is required (QUIESCE_REQUIRED_PYTHONS=\"$required\") but was" \
                "not found, neither in pyenv nor as python$minor on PATH; install it, or leave it" \
                "out of QUIESCE_REQUIRED_PYTHONS" >&2
            exit 1
        else
            missing_pythons+=("$minor")
        fi
    done
    if [ ${#pythons[@]} -eq 0 ]; then
        echo "error: none of CPython $wanted was found (pyenv, or python3.X on PATH); install one," \
            "or name the ones you have in QUIESCE_PYTHONS (for example QUIESCE_PYTHONS=\"3.12\")" >&2
        exit 1
    fi
    found_versions=$(for py in "${pythons[@]}"; do "$py" -c 'import platform; print(platform.python_version(), end=" ")'; done)
    found_versions=${found_versions% }
    echo "== CPython found: $found_versions"
    if [ ${#missing_pythons[@]} -gt 0 ]; then
        echo "note: not found, so not tested: CPython ${missing_pythons[*]}" \
            "(set QUIESCE_REQUIRED_PYTHONS to make a missing one an error)"
    fi
}

# Pinned maturin, ruff and mypy in .venvs/tools; sets `tools`.
ensure_tools() {
    local host_python
    host_python=$(find_python 3.11)
    host_python=${host_python:-${pythons[0]:-$(command -v python3)}}
    tools=.venvs/tools
    if [ ! -x "$tools/bin/maturin" ] || ! "$tools/bin/maturin" --version | grep -q "$MATURIN_VERSION" \
        || ! "$tools/bin/ruff" --version 2>/dev/null | grep -q "$RUFF_VERSION" \
        || ! "$tools/bin/mypy" --version 2>/dev/null | grep -q "mypy $MYPY_VERSION"; then
        "$host_python" -m venv "$tools"
        "$tools/bin/pip" install -q "maturin==$MATURIN_VERSION" "ruff==$RUFF_VERSION" \
            "mypy==$MYPY_VERSION"
    fi
}

# build_wheels PYTHON...: one release wheel per interpreter into dist/.
build_wheels() {
    local py interpreter_args=()
    rm -rf dist
    for py in "$@"; do interpreter_args+=(-i "$py"); done
    "$tools/bin/maturin" build --release --locked -o dist "${interpreter_args[@]}"
}

# venv_with_wheel PYTHON: .venvs/cpXY with the test dependencies (tests/requirements/cpXY.txt:
# pytest and the real libraries the suite runs against) and this build's wheel; prints its path.
venv_with_wheel() {
    local py=$1 tag venv requirements
    tag=$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    venv=.venvs/$tag
    requirements=tests/requirements/$tag.txt
    [ -x "$venv/bin/python" ] || "$py" -m venv "$venv" >&2
    if [ -f "$requirements" ]; then
        "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements" >&2
    else
        echo "note: no $requirements; installing the newest test dependencies unpinned" >&2
        "$venv/bin/pip" install -q --disable-pip-version-check "pytest==$PYTEST_VERSION" \
            aiohttp websockets aiosqlite >&2
    fi
    "$venv/bin/pip" install -q --force-reinstall --no-deps dist/quiesce-*-"$tag"-*.whl >&2
    echo "$venv"
}

# -- interop recipes (tests_interop/) ---------------------------------------------------------
# Existing pytest-asyncio and anyio suites run unchanged on quiesce, with only a conftest.py
# recipe added. Each flavour is an exact, complete pin set per interpreter tag: pa1 is the
# newest pytest-asyncio 1.x for that Python (with anyio), pa0 the 0.2x line still common on 3.9.
# (pytest-asyncio 1.5 needs pytest >= 8.4, hence pytest 9 on cp313.)
# Every flavour also has pytest-aiohttp (a plugin built on pytest-asyncio; 1.1.1 needs 3.10+) and its aiohttp.
AIOHTTP_PINS_CP39="pytest-aiohttp==1.1.0 aiohappyeyeballs==2.6.1 aiohttp==3.13.5 aiosignal==1.4.0 async-timeout==5.0.1 attrs==26.1.0 frozenlist==1.8.0 multidict==6.7.1 propcache==0.4.1 yarl==1.22.0"
AIOHTTP_PINS_CP313="pytest-aiohttp==1.1.1 aiohappyeyeballs==2.7.1 aiohttp==3.14.5 aiosignal==1.4.0 attrs==26.1.0 frozenlist==1.8.0 multidict==7.2.1 propcache==0.5.4 yarl==1.25.1"
interop_pins() {  # interop_pins TAG FLAVOUR: the requirements, or nothing if that pair is not pinned
    case "$1-$2" in
        cp39-pa1) echo "pytest==8.3.5 pytest-asyncio==1.2.0 anyio==4.12.1 backports.asyncio.runner==1.2.0 exceptiongroup==1.3.2 idna==3.20 iniconfig==2.1.0 packaging==26.3 pluggy==1.6.0 tomli==2.5.0 typing_extensions==4.16.0 $AIOHTTP_PINS_CP39" ;;
        cp39-pa0) echo "pytest==7.4.4 pytest-asyncio==0.21.2 exceptiongroup==1.3.2 idna==3.20 iniconfig==2.1.0 packaging==26.3 pluggy==1.6.0 tomli==2.5.0 typing_extensions==4.16.0 $AIOHTTP_PINS_CP39" ;;
        cp313-pa1) echo "pytest==9.2.0 pytest-asyncio==1.5.0 anyio==4.16.0 idna==3.20 iniconfig==2.3.1 packaging==26.4 pluggy==1.7.0 Pygments==2.21.0 typing_extensions==4.16.0 $AIOHTTP_PINS_CP313" ;;
        cp313-pa0) echo "pytest==8.3.5 pytest-asyncio==0.23.8 idna==3.20 iniconfig==2.3.1 packaging==26.4 pluggy==1.7.0 $AIOHTTP_PINS_CP313" ;;
        cp314-pa1 | cp315-pa1) echo "pytest==9.2.0 pytest-asyncio==1.5.0 anyio==4.16.0 idna==3.20 iniconfig==2.3.1 packaging==26.4 pluggy==1.7.0 Pygments==2.21.0 typing_extensions==4.16.0 $AIOHTTP_PINS_CP313" ;;
        # No pa0 from 3.14 on: pytest-asyncio 0.23 errors at collection there, quiesce or not
        # (it calls asyncio.iscoroutinefunction, which 3.14 deprecates).
    esac
}

# interop_venv PYTHON FLAVOUR: .venvs/cpXY-interop-FLAVOUR with the flavour's pins and this
# build's wheel (whose pytest11 entry point loads the quiesce plugin); prints its path, or
# nothing if the pair is not pinned. Rebuilt from scratch whenever the pins change.
interop_venv() {
    local py=$1 flavour=$2 tag venv pins
    tag=$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    pins=$(interop_pins "$tag" "$flavour")
    [ -n "$pins" ] || return 0
    venv=.venvs/$tag-interop-$flavour
    if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/interop-pins.txt" 2>/dev/null)" != "$pins" ]; then
        rm -rf "$venv"
        "$py" -m venv "$venv" >&2
        # shellcheck disable=SC2086
        "$venv/bin/pip" install -q --disable-pip-version-check $pins >&2
        echo "$pins" >"$venv/interop-pins.txt"
    fi
    "$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps \
        dist/quiesce-*-"$tag"-*.whl >&2
    echo "$venv"
}

# junit_counts PYTHON REPORT: prints "passed failed skipped" from a junit XML report.
junit_counts() {
    "$1" - "$2" <<'PY'
import sys, xml.etree.ElementTree as ET
suite = ET.parse(sys.argv[1]).getroot()
suite = suite if suite.tag == "testsuite" else suite[0]
tests, fail, err, skip = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
print(tests - fail - err - skip, fail + err, skip)
PY
}

# run_interop VENV SUITE RECIPE LABEL [PYTEST ARGS...]: copies tests_interop/SUITE and, unless
# RECIPE is "-", tests_interop/RECIPE/conftest.py into a scratch directory (the suite's files
# stay untouched, as a user's would), runs pytest there, and adds the outcome to the globals
# interop_passed, interop_failed and interop_skipped. Never fails itself.
interop_passed=0; interop_failed=0; interop_skipped=0
run_interop() {
    local venv=$1 suite=$2 recipe=$3 label=$4 python scratch report status counts p f s
    shift 4
    python="$(cd "$venv" && pwd)/bin/python"
    scratch="$PWD/.venvs/interop/$(basename "$venv")-$label"
    report="$scratch.junit.xml"
    rm -rf "$scratch" "$report"
    mkdir -p "$scratch"
    cp -R "tests_interop/$suite/." "$scratch/"
    [ "$recipe" = "-" ] || cp "tests_interop/$recipe/conftest.py" "$scratch/conftest.py"
    echo "== interop: $label ($venv)"
    set +e
    (cd "$scratch" && "$python" -m pytest -q -p no:cacheprovider --junitxml "$report" "$@")
    status=$?
    set -e
    if [ -f "$report" ]; then counts=$(junit_counts "$python" "$report"); else counts="0 0 0"; fi
    read -r p f s <<<"$counts"
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    interop_passed=$((interop_passed + p)); interop_failed=$((interop_failed + f))
    interop_skipped=$((interop_skipped + s))
}

# run_interop_recipes PYTHON: every recipe suite for one interpreter (pinned tags only).
run_interop_recipes() {
    local py=$1 venv
    venv=$(interop_venv "$py" pa1)
    if [ -z "$venv" ]; then
        echo "note: no interop pins for $("$py" --version); skipping the recipes there"
        return 0
    fi
    run_interop "$venv" asyncio_suite pytest_asyncio_1 pytest-asyncio-1
    run_interop "$venv" anyio_suite anyio anyio
    run_interop "$venv" coexist - coexist-strict
    run_interop "$venv" coexist - coexist-auto -o quiesce_mode=auto
    run_interop "$venv" auto_mode - pytest-asyncio-auto-mode
    venv=$(interop_venv "$py" pa0)
    if [ -z "$venv" ]; then
        echo "note: no pytest-asyncio 0.2x pins for $("$py" --version); skipping that flavour"
        return 0
    fi
    run_interop "$venv" asyncio_suite pytest_asyncio_0 pytest-asyncio-0
    run_interop "$venv" coexist - coexist-strict
    run_interop "$venv" auto_mode - pytest-asyncio-auto-mode
}
