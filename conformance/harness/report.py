"""Counts, the checks that make a run fail, and the RESULTS.md document."""

from __future__ import annotations

import platform
import time
from typing import Any, Dict, List, Optional, Tuple

from harness import catalog, expectations, routes

#: ``(python version, mode) -> saved results`` (see ``cli.load_results``).
Results = Dict[Tuple[str, str], Dict[str, Any]]

#: Statuses that count as "the test did what it should".
PASSED = ("pass", "xfail", "flaky")
#: Statuses that count as a failure in a difference.
FAILED = ("fail", "error", "uxpass", "hang", "crash")

MODE_TITLES = {
    "stock": "stock asyncio",
    "real": 'quiesce clock="real"',
    "virtual": 'quiesce clock="virtual"',
}


def count(run: Dict[str, Any]) -> Dict[str, int]:
    """Table counts of one module run."""
    counts = {"run": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0, "flaky": 0}
    for record in run["records"].values():
        status = record["status"]
        if not record.get("fixture"):
            counts["run"] += 1
        if status in PASSED:
            counts["passed"] += 1
            counts["flaky"] += status == "flaky"
        elif status in ("fail", "uxpass", "hang", "crash"):
            counts["failed"] += 1
        elif status == "error":
            counts["errors"] += 1
        elif status == "skip":
            counts["skipped"] += 1
    return counts


def versions(results: Results) -> List[str]:
    """Interpreter versions present, oldest first."""
    found = {version for version, _mode in results}
    return sorted(found, key=lambda v: tuple(int(part) for part in v.split(".")))


def differences(results: Results, version: str, mode: str) -> List[Dict[str, Any]]:
    """Tests that pass on stock but not in ``mode`` (a quiesce mode) on ``version``, each
    with its triage from :mod:`harness.expectations` (or None)."""
    stock = results.get((version, "stock"), {}).get("modules", {})
    ours = results.get((version, mode), {}).get("modules", {})
    found = []
    for module, run in sorted(ours.items()):
        stock_records = stock.get(module, {}).get("records", {})
        for test_id, record in sorted(run["records"].items()):
            if record["status"] not in FAILED:
                continue
            stock_record = stock_records.get(test_id)
            stock_status = stock_record["status"] if stock_record else "not run"
            if stock_status not in PASSED:
                continue
            found.append(
                {
                    "id": test_id,
                    "status": record["status"],
                    "reason": record.get("reason", ""),
                    "stock": stock_status,
                    "triage": expectations.triage(version, mode, test_id),
                }
            )
    return found


def foreign_loops(results: Results, version: str, mode: str) -> List[Tuple[str, Dict[str, int]]]:
    """Tests of a quiesce mode that created or ran a loop that is not a ``quiesce.Loop``."""
    found = []
    for _module, run in sorted(results.get((version, mode), {}).get("modules", {}).items()):
        for test_id, record in sorted(run["records"].items()):
            loops = record.get("loops", {})
            other = {
                f"{kind}:{label}": n
                for kind in ("created", "runs")
                for label, n in loops.get(kind, {}).items()
                if label != routes.QUIESCE and expectations.own_loop(test_id, label) is None
            }
            if other:
                found.append((test_id, other))
    return found


def own_loops(results: Results, version: str) -> List[Tuple[str, str, str]]:
    """``(test id, loop class, why)`` of the quiesce-mode tests that build their own loop on
    purpose (:data:`harness.expectations.OWN_LOOPS`), once per test."""
    found: Dict[Tuple[str, str], str] = {}
    for mode in ("real", "virtual"):
        for run in results.get((version, mode), {}).get("modules", {}).values():
            for test_id, record in run["records"].items():
                for label in record.get("loops", {}).get("created", {}):
                    why = expectations.own_loop(test_id, label)
                    if label != routes.QUIESCE and why is not None:
                        found[(test_id, label)] = why
    return [(test_id, label, why) for (test_id, label), why in sorted(found.items())]


def _quiesce_totals(run: Dict[str, Any]) -> Tuple[int, int]:
    """``(loops created, loop runs)`` of quiesce loops in a module run."""
    loops = run.get("loops", {})
    return (
        loops.get("created", {}).get(routes.QUIESCE, 0),
        loops.get("runs", {}).get(routes.QUIESCE, 0),
    )


def _failures(run: Dict[str, Any]) -> int:
    counts = count(run)
    return counts["failed"] + counts["errors"]


def check(results: Results) -> List[str]:
    """Problems that make the run fail: a module that did not finish, a quiesce-mode test
    that ran on another loop, a difference from stock that nobody triaged, a triaged quiesce
    bug, or a self-check whose broken loop went unnoticed."""
    problems: List[str] = []
    for (version, mode), data in sorted(results.items()):
        for module, run in sorted(data.get("modules", {}).items()):
            for note in run.get("notes", []):
                if note.startswith(("module timeout", "gave up", "worker error")):
                    problems.append(f"{version} {mode} {module}: {note.splitlines()[0]}")
            if mode != "stock" and _quiesce_totals(run) == (0, 0) and count(run)["run"]:
                problems.append(f"{version} {mode} {module}: no quiesce.Loop was created or run")
        if mode == "stock":
            continue
        if mode in ("real", "virtual"):
            for test_id, other in foreign_loops(results, version, mode):
                problems.append(f"{version} {mode} {test_id}: ran on another loop: {other}")
            for diff in differences(results, version, mode):
                triage = diff["triage"]
                if triage is None:
                    problems.append(
                        f"{version} {mode} {diff['id']}: {diff['status']} (passes on stock), "
                        f"untriaged: {diff['reason']}"
                    )
                elif triage.kind == expectations.BUG:
                    problems.append(f"{version} {mode} {diff['id']}: quiesce bug: {triage.why}")
        else:
            real = results.get((version, "real"), {}).get("modules", {})
            broken_failures = sum(_failures(run) for run in data.get("modules", {}).values())
            real_failures = sum(
                _failures(real[module]) for module in data.get("modules", {}) if module in real
            )
            if broken_failures <= real_failures:
                problems.append(
                    f"{version} self-check {mode}: the broken loop failed {broken_failures} "
                    f"tests, no more than the real one ({real_failures}): the harness cannot "
                    "tell a broken loop from a working one"
                )
    return problems


# -- the document ----------------------------------------------------------------------------


def _cell(run: Optional[Dict[str, Any]]) -> List[str]:
    if run is None:
        return ["-"] * 5
    counts = count(run)
    passed = str(counts["passed"])
    if counts["flaky"]:
        passed += f" ({counts['flaky']} flaky)"
    return [
        str(counts["run"]),
        passed,
        str(counts["failed"]),
        str(counts["errors"]),
        str(counts["skipped"]),
    ]


def _table(results: Results, version: str, modes: List[str]) -> List[str]:
    header = ["module"]
    for mode in modes:
        short = {"stock": "stock", "real": "real", "virtual": "virtual"}[mode]
        header += [f"{short} run", "passed", "failed", "errors", "skipped"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    modules = [m.name for m in catalog.INCLUDED]
    present = set()
    for mode in modes:
        present.update(results.get((version, mode), {}).get("modules", {}))
    totals: Dict[str, Dict[str, int]] = {}
    for module in modules:
        if module not in present:
            continue
        row = [module]
        for mode in modes:
            run = results.get((version, mode), {}).get("modules", {}).get(module)
            row += _cell(run)
            if run is not None:
                total = totals.setdefault(mode, {})
                for key, value in count(run).items():
                    total[key] = total.get(key, 0) + value
        lines.append("| " + " | ".join(row) + " |")
    row = ["**total**"]
    for mode in modes:
        total = totals.get(mode)
        if total is None:
            row += ["-"] * 5
        else:
            row += [
                f"**{total['run']}**",
                f"**{total['passed']}**",
                f"**{total['failed']}**",
                f"**{total['errors']}**",
                f"**{total['skipped']}**",
            ]
    lines.append("| " + " | ".join(row) + " |")
    return lines


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _difference_lines(results: Results, version: str, mode: str) -> List[str]:
    diffs = differences(results, version, mode)
    if not diffs:
        return ["None: every test that passes on stock passes here."]
    lines = ["| test | result | kind | why |", "|---|---|---|---|"]
    for diff in diffs:
        triage = diff["triage"]
        kind = triage.kind if triage else "**UNTRIAGED**"
        why = triage.why if triage else _escape(diff["reason"])
        lines.append(f"| `{diff['id']}` | {diff['status']} | {kind} | {_escape(why)} |")
    return lines


def _flaky_lines(results: Results, version: str, modes: List[str]) -> List[str]:
    lines = []
    for mode in modes:
        for _module, run in sorted(results.get((version, mode), {}).get("modules", {}).items()):
            for test_id, record in sorted(run["records"].items()):
                if record["status"] == "flaky":
                    lines.append(
                        f"- {MODE_TITLES[mode]}: `{test_id}` failed once "
                        f"({_escape(record.get('reason', ''))[:160]}), passed when re-run alone"
                    )
    return lines


def _census_lines(results: Results, version: str, modes: List[str]) -> List[str]:
    lines = ["| mode | loops created | loop runs |", "|---|---|---|"]
    for mode in modes:
        created: Dict[str, int] = {}
        runs: Dict[str, int] = {}
        for run in results.get((version, mode), {}).get("modules", {}).values():
            for label, n in run.get("loops", {}).get("created", {}).items():
                created[label] = created.get(label, 0) + n
            for label, n in run.get("loops", {}).get("runs", {}).items():
                runs[label] = runs.get(label, 0) + n

        def fmt(counter: Dict[str, int]) -> str:
            return ", ".join(f"{label}: {n}" for label, n in sorted(counter.items())) or "none"

        lines.append(f"| {MODE_TITLES.get(mode, mode)} | {fmt(created)} | {fmt(runs)} |")
    return lines


def _self_check_lines(results: Results, version: str) -> List[str]:
    lines = []
    real = results.get((version, "real"), {}).get("modules", {})
    for name, description in routes.BROKEN_VARIANTS.items():
        data = results.get((version, f"broken-{name}"))
        if not data:
            continue
        parts = []
        for module, run in sorted(data.get("modules", {}).items()):
            counts = count(run)
            good = _failures(real[module]) if module in real else "?"
            parts.append(
                f"{module}: {counts['failed'] + counts['errors']} of {counts['run']} fail "
                f"(working loop: {good})"
            )
        lines.append(f"- {description}: " + "; ".join(parts))
    return lines


def render(results: Results, command: str) -> str:
    """The whole RESULTS.md."""
    out: List[str] = [
        "# test_asyncio on quiesce.Loop: results",
        "",
        "Generated by `conformance/run.py` (see [README.md](README.md)); do not edit by hand.",
        f"Regenerate with `{command}`.",
        "",
        f"Last run: {time.strftime('%Y-%m-%d')}, on {platform.system()} {platform.machine()}.",
        "",
        "Counts are per test method (a test with subtests counts once). *passed* includes "
        "expected failures and tests that failed once but passed when re-run alone "
        "(*flaky*, listed below). A hang (no result within the per-test timeout) or a crash "
        "counts as *failed*.",
        "",
    ]
    for version in versions(results):
        modes = [m for m in ("stock", "real", "virtual") if (version, m) in results]
        info = next(iter(results[(version, m)] for m in modes), {}).get("python", {})
        out += [f"## CPython {version}", ""]
        if info.get("quiesce"):
            out += [f"quiesce {info['quiesce']}.", ""]
        out += [*_table(results, version, modes), ""]
        out += ["### Which loops the tests ran on", ""]
        out += [*_census_lines(results, version, modes), ""]
        foreign = [
            (mode, test_id, other)
            for mode in modes
            if mode != "stock"
            for test_id, other in foreign_loops(results, version, mode)
        ]
        if foreign:
            out += ["Tests of a quiesce mode that made or ran another loop:", ""]
            out += [f"- {mode}: `{test_id}`: {other}" for mode, test_id, other in foreign] + [""]
        else:
            out += [
                "In the quiesce modes no test created or ran any loop but `quiesce.Loop`"
                + (
                    ", except the tests below, which build a loop class of their own."
                    if own_loops(results, version)
                    else "."
                ),
                "",
            ]
        own = own_loops(results, version)
        if own:
            out += [f"- `{test_id}`: `{label}`: {why}" for test_id, label, why in own] + [""]
        self_check = _self_check_lines(results, version)
        if self_check:
            out += ["### Self-check: deliberately broken loops", "", *self_check, ""]
        for mode in ("real", "virtual"):
            if (version, mode) in results:
                out += [f"### Differences from stock, {MODE_TITLES[mode]}", ""]
                out += [*_difference_lines(results, version, mode), ""]
        flaky = _flaky_lines(results, version, modes)
        if flaky:
            out += ["### Flaky (failed, then passed alone)", "", *flaky, ""]
    return "\n".join(out).rstrip() + "\n"
