"""Conformance harness: runs CPython's own test_asyncio modules against ``quiesce.Loop``.

``conformance/run.py`` is the entry point (driver and, with ``--worker``, the per-module child
process). The modules here:

- :mod:`harness.catalog`: which test_asyncio modules run, which are left out and why, the fast
  subset, and tests left out of included modules.
- :mod:`harness.routes`: the loop substitution (every route by which a test makes a loop) and
  the loop census that proves which loops the tests ran on.
- :mod:`harness.worker`: runs one module inside the child and streams per-test records.
- :mod:`harness.driver`: spawns the children with per-test and per-module timeouts, resumes
  after a hang or crash, and collects results.
- :mod:`harness.expectations`: triaged differences (expected differences and quiesce bugs).
- :mod:`harness.report`: renders ``RESULTS.md``.
"""
