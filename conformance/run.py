#!/usr/bin/env python3
"""Runs CPython's own test_asyncio modules against quiesce.Loop, and reports.

    # everything: stock, quiesce clock="real", quiesce clock="virtual", and the self-check,
    # on two interpreters (each with the quiesce wheel installed), rewriting RESULTS.md:
    python conformance/run.py --python /tmp/conf39/bin/python --python /tmp/conf313/bin/python \\
        --mode all --write conformance/RESULTS.md

    # the fast subset (CI):
    python conformance/run.py --fast --python /path/to/python

    # one module, one mode:
    python conformance/run.py --python /path/to/python --mode virtual --module test_locks

Each module runs in a fresh child process of the target interpreter with a per-test and a
per-module timeout (see harness/driver.py). Raw per-test results are kept as JSON in --out.
Exit status: 0 when every module ran, the self-check caught the broken loops, and no
difference from stock is left untriaged (see harness/expectations.py); 1 otherwise.
See conformance/README.md.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        from harness import worker

        sys.exit(worker.main(sys.argv[2:]))
    from harness import cli

    sys.exit(cli.main(sys.argv[1:]))
