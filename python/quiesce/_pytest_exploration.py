"""How the pytest plugin explores a test beyond one process's ``quiesce.explore`` call:
spread over pytest-xdist workers and ``--quiesce-shard`` jobs, and remembered in the failure
database.

Under ``pytest -n N`` each explored test is collected as N items, ``test_x[quiesce-shard-1-of-N]``
to ``...-N-of-N``; item *i* makes the runs whose index is *i - 1* modulo N (run *j*'s
schedule depends only on *j*, so the N items make exactly the runs of one exploration). The
workers share their progress through files in a directory the xdist controller makes, so
that the shard owning the lowest failing run reports it, with the text and replay line of
``-n 0``; the others stop early and report skipped, naming it. ``--quiesce-shard=i/k`` does
the same across machines (shares nothing: each job reports the lowest failure it finds).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

from quiesce._explore import (
    ExploreResult,
    SavedSchedule,
    Shard,
    ShardProgress,
    TestFactory,
    _checked_settings,
    _explore,
    replay,
)
from quiesce._failure_db import FailureDatabase
from quiesce._shard_files import FileShardProgress

#: (number, count) of an item made by splitting an explored test over xdist workers.
WORKER_SHARD_KEY = pytest.StashKey[Tuple[int, int]]()
#: The node id of the test an item was split from.
ORIGINAL_NODEID_KEY = pytest.StashKey[str]()

#: The ``workerinput`` key naming the directory the workers share progress in.
SHARED_DIRECTORY_INPUT = "quiesce_shard_directory"

#: The default failure database directory, under the rootdir.
DEFAULT_DATABASE = ".quiesce"


def parse_shard(text: Optional[str]) -> Optional[Tuple[int, int]]:
    """``--quiesce-shard=i/k`` as ``(i, k)``; ``pytest.UsageError`` if it is not one."""
    if text is None:
        return None
    number, _, count = text.partition("/")
    try:
        shard = (int(number), int(count))
    except ValueError:
        shard = (0, 0)
    if not 1 <= shard[0] <= shard[1]:
        raise pytest.UsageError(
            f"--quiesce-shard takes i/k with 1 <= i <= k (this job makes the i-th of k shares "
            f"of every exploration), e.g. --quiesce-shard=2/4; got {text!r}"
        )
    return shard


def machine_shard(config: pytest.Config) -> Optional[Tuple[int, int]]:
    """This job's ``--quiesce-shard``, or None."""
    return parse_shard(config.getoption("quiesce_shard", None))


def database(config: pytest.Config) -> Optional[FailureDatabase]:
    """The failure database ``--quiesce-db`` names (default ``.quiesce`` in the rootdir), or
    None for ``--quiesce-db=none``."""
    given = config.getoption("quiesce_db", None)
    if given is not None and given.strip().lower() == "none":
        return None
    rootdir = Path(config.rootpath)
    directory = Path(given) if given else rootdir / DEFAULT_DATABASE
    if not directory.is_absolute():
        directory = Path(config.invocation_params.dir) / directory
    return FailureDatabase(directory, rootdir, test_run_id(config))


def test_run_id(config: pytest.Config) -> str:
    """An id of this test run, the same in every xdist worker of it."""
    workerinput = _workerinput(config)
    if workerinput is not None and "testrunuid" in workerinput:
        return str(workerinput["testrunuid"])
    run_id = getattr(config, "_quiesce_test_run_id", None)
    if run_id is None:
        run_id = uuid.uuid4().hex
        config._quiesce_test_run_id = run_id  # type: ignore[attr-defined]
    return str(run_id)


def _workerinput(config: pytest.Config) -> Optional[Dict[str, Any]]:
    return getattr(config, "workerinput", None)


def worker_count(config: pytest.Config) -> int:
    """How many pytest-xdist workers run this session (1 without xdist, and on the
    controller)."""
    workerinput = _workerinput(config)
    if workerinput is None:
        return 1
    return int(workerinput.get("workercount", 1))


def shared_directory(config: pytest.Config) -> str:
    """The directory (made once, on the xdist controller) the workers share progress in."""
    directory = getattr(config, "_quiesce_shard_directory", None)
    if directory is None:
        directory = tempfile.mkdtemp(prefix="quiesce-shards-")
        config._quiesce_shard_directory = directory  # type: ignore[attr-defined]
    return str(directory)


def remove_shared_directory(config: pytest.Config) -> None:
    """Removes the controller's shared directory at the end of the session."""
    directory = getattr(config, "_quiesce_shard_directory", None)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


def _shard_name(name: str, number: int, count: int) -> str:
    suffix = f"quiesce-shard-{number}-of-{count}"
    if name.endswith("]") and "[" in name:
        return f"{name[:-1]}-{suffix}]"
    return f"{name}[{suffix}]"


def split_over_workers(
    items: List[pytest.Item], splits: Callable[[pytest.Item], bool], keys: List[Any]
) -> List[pytest.Item]:
    """On an xdist worker of a session with several, each item ``splits`` accepts becomes one
    item per worker (with the stash entries ``keys`` copied); elsewhere, ``items``."""
    count = worker_count(items[0].config) if items else 1
    if count < 2:
        return items
    result: List[pytest.Item] = []
    for item in items:
        if not isinstance(item, pytest.Function) or not splits(item):
            result.append(item)
            continue
        for number in range(1, count + 1):
            shard = pytest.Function.from_parent(
                item.parent,
                name=_shard_name(item.name, number, count),
                callspec=getattr(item, "callspec", None),
                callobj=item.obj,
                fixtureinfo=item._fixtureinfo,
                keywords=item.keywords,
                originalname=item.originalname,
            )
            shard.own_markers = list(item.own_markers)
            for key in keys:
                if key in item.stash:
                    shard.stash[key] = item.stash[key]
            shard.stash[WORKER_SHARD_KEY] = (number, count)
            shard.stash[ORIGINAL_NODEID_KEY] = item.nodeid
            result.append(shard)
    return result


def original_nodeid(item: pytest.Item) -> str:
    """The node id of the test ``item`` is (for a shard item, of the test it was split from):
    the one to rerun, replay and key the failure database by."""
    return item.stash.get(ORIGINAL_NODEID_KEY, item.nodeid)


def shard_of(item: pytest.Item) -> Optional[Shard]:
    """Which runs of the exploration ``item`` makes: its worker share within this job's
    ``--quiesce-shard`` share, with the workers' shared progress; None for all of them."""
    worker = item.stash.get(WORKER_SHARD_KEY, None)
    job = machine_shard(item.config)
    if worker is None and job is None:
        return None
    job_number, job_count = job or (1, 1)
    worker_number, workers = worker or (1, 1)
    number = job_number + job_count * (worker_number - 1)
    count = job_count * workers
    progress = ShardProgress()
    workerinput = _workerinput(item.config)
    directory = None if workerinput is None else workerinput.get(SHARED_DIRECTORY_INPUT)
    if worker is not None and directory is not None:
        digest = hashlib.sha256(original_nodeid(item).encode()).hexdigest()[:24]
        progress = FileShardProgress(Path(directory) / digest, number, count)
    return Shard(number, count, progress)


def shard_nodeid(item: pytest.Item, number: int) -> str:
    """The node id of the item making shard ``number`` of ``item``'s exploration, with the
    ``--quiesce-shard`` of its job when that is another job."""
    job_number, job_count = machine_shard(item.config) or (1, 1)
    worker = item.stash.get(WORKER_SHARD_KEY, None)
    nodeid = original_nodeid(item)
    if worker is not None:
        base, _, name = nodeid.rpartition("::")
        nodeid = f"{base}::{_shard_name(name, (number - 1) // job_count + 1, worker[1])}"
    owner_job = (number - 1) % job_count + 1
    if owner_job != job_number:
        return f"{nodeid} with --quiesce-shard={owner_job}/{job_count}"
    return nodeid


def explore_item(item: pytest.Item, test: TestFactory, **kwargs: Any) -> ExploreResult:
    """Explores ``test`` (the item's test with its fixtures) as ``quiesce.explore(test,
    **kwargs)`` would, for this item's shard; with the failure database: its saved schedules
    for this test first (by the first shard only), and a failure found saved."""
    settings = _checked_settings(**kwargs)
    shard = shard_of(item)
    db = database(item.config)
    nodeid = original_nodeid(item)
    entries = db.entries(nodeid) if db is not None else []
    # Shard 1 replays the saved schedules first and keeps their counts; the others replay
    # them only after a failure of their own (a lower failure that shard 1 reports).
    counts = shard is None or shard.number == 1
    saved = [
        SavedSchedule(
            entry.schedule,
            f"the failing schedule saved in the failure database on {entry.found} (found by "
            f"run {entry.run}, {entry.policy})",
        )
        for entry in entries
    ]
    result = _explore(test, settings, shard=shard, saved=saved)
    if db is None:
        return result
    for entry, replayed in zip(entries, saved if counts else []):
        if replayed.verdict == "passed":
            db.passed(entry)
        elif replayed.verdict == "stale":
            db.forget(entry)
    failure = result.failure
    again = [entry for entry, replayed in zip(entries, saved) if replayed.verdict == "failed"]
    if failure is not None and failure.origin is not None and again:
        if counts:
            db.failed_again(again[0])
    elif failure is not None:
        entry = db.save(
            nodeid,
            failure.schedule,
            run=failure.run,
            policy=failure.policy,
            seed=failure.seed,
            error=failure.error,
        )
        _save_timeline(test, failure.schedule, entry, settings)
    return result


def _save_timeline(test: TestFactory, schedule: str, entry: Any, settings: Any) -> None:
    """Writes the timeline of a saved failing schedule beside its entry (``<entry>.html``);
    one more run of the test. A timeline that cannot be made is left out: the entry stands."""
    if entry.path is None:
        return
    path = Path(entry.path).with_suffix(".html")
    try:
        replay(
            test, schedule, clock=settings.clock, strict=False, trace=path, **settings.run_options
        )
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:
        pass  # the schedule fails, as it should: the timeline is written either way
