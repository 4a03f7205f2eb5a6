"""The failure database: every failing schedule an explored pytest test found, kept so that
the next run of that test replays it first (as Hypothesis replays its example database).

Layout: ``<db>/.gitignore`` (``*``: the database is a cache of this checkout, not source),
and one JSON file per failing schedule, ``<db>/<digest of the node id>/<digest of the
schedule>.json``, with the run's timeline beside it (``.html``, see ``quiesce._timeline``).
Each file is written whole and renamed into place, so concurrent pytest-xdist workers (or two
pytest processes) never see a torn entry; a lost update costs at most one pass count. An
entry that passes ``PASSES_TO_FORGET`` times in a row is deleted.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from quiesce._files import write_atomically

#: Passes in a row after which a saved schedule is forgotten (the bug it found is fixed).
PASSES_TO_FORGET = 3

#: The file that keeps the database out of version control.
GITIGNORE = "# quiesce's failure database: a cache of this checkout, not source.\n*\n"


@dataclass
class Entry:
    """One saved failing schedule of one test."""

    #: The pytest node id of the test, relative to the rootdir.
    nodeid: str
    #: The schedule string (``quiesce.replay`` / ``--quiesce-replay`` take it).
    schedule: str
    #: When it was found (UTC, ISO 8601).
    found: str
    #: The run of the exploration that found it (1-based; 0 for a saved schedule that failed
    #: again), its strategy and seed.
    run: int
    policy: str
    seed: Optional[int]
    #: Passes in a row since it last failed.
    passes: int
    #: The failure, as the test's exception type and message.
    error: str
    #: The rootdir the node id is relative to.
    rootdir: str
    #: The test run (pytest session, or all workers of one xdist run) that saved it: the
    #: same run does not replay it (another shard of the test found it and reports it).
    session: str = ""
    #: Where the entry is stored (not saved in the file).
    path: Optional[str] = None

    def to_json(self) -> str:
        """The entry as the JSON text of its file."""
        fields = asdict(self)
        del fields["path"]
        return json.dumps(fields, indent=2, sort_keys=True) + "\n"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def read_entry(path: Path) -> Entry:
    """Reads an entry file; ``ValueError`` saying what is wrong if it is not one."""
    try:
        fields: Dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"cannot read the failure database entry {str(path)!r}: {error}") from None
    except ValueError as error:
        raise ValueError(
            f"{str(path)!r} is not a failure database entry (not JSON: {error})"
        ) from None
    names = set(Entry.__dataclass_fields__) - {"path", "session"}
    if not isinstance(fields, dict) or not names <= set(fields):
        missing = sorted(names - set(fields)) if isinstance(fields, dict) else sorted(names)
        raise ValueError(
            f"{str(path)!r} is not a failure database entry (missing {', '.join(missing)})"
        )
    if not isinstance(fields["nodeid"], str) or not isinstance(fields["schedule"], str):
        raise ValueError(f"{str(path)!r}: nodeid and schedule must be strings")
    session = fields.get("session", "")
    return Entry(**{name: fields[name] for name in names}, session=str(session), path=str(path))


class FailureDatabase:
    """The failing schedules saved under ``directory`` for the tests of ``rootdir``, by test
    run ``session``."""

    def __init__(self, directory: Path, rootdir: Path, session: str) -> None:
        self.directory = directory
        self.rootdir = rootdir
        self.session = session

    def _test_directory(self, nodeid: str) -> Path:
        return self.directory / _digest(nodeid)

    def _ensure(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        ignore = self.directory / ".gitignore"
        if not ignore.exists():
            write_atomically(ignore, GITIGNORE)

    def entries(self, nodeid: str) -> List[Entry]:
        """The saved schedules of test ``nodeid`` from earlier test runs, oldest first
        (unreadable files skipped: another process may be deleting one)."""
        found: List[Entry] = []
        directory = self._test_directory(nodeid)
        if not directory.is_dir():
            return found
        for path in sorted(directory.glob("*.json")):
            try:
                entry = read_entry(path)
            except ValueError:
                continue
            if entry.nodeid == nodeid and entry.session != self.session:
                found.append(entry)
        found.sort(key=lambda entry: (entry.found, entry.schedule))
        return found

    def save(
        self,
        nodeid: str,
        schedule: str,
        *,
        run: int,
        policy: str,
        seed: Optional[int],
        error: BaseException,
    ) -> Entry:
        """Saves (or renews, with its pass count back at 0) a failing schedule."""
        self._ensure()
        message = str(error).splitlines()[0] if str(error) else ""
        entry = Entry(
            nodeid=nodeid,
            schedule=schedule,
            found=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            run=run,
            policy=policy,
            seed=seed,
            passes=0,
            error=f"{type(error).__name__}: {message}" if message else type(error).__name__,
            rootdir=str(self.rootdir),
            session=self.session,
        )
        path = self._test_directory(nodeid) / f"{_digest(schedule)}.json"
        write_atomically(path, entry.to_json())
        entry.path = str(path)
        return entry

    def passed(self, entry: Entry) -> None:
        """Counts a pass of ``entry``; forgets it after ``PASSES_TO_FORGET`` in a row."""
        if entry.path is None:
            return
        path = Path(entry.path)
        entry.passes += 1
        if entry.passes >= PASSES_TO_FORGET:
            self.forget(entry)
            return
        if path.exists():
            write_atomically(path, entry.to_json())

    def failed_again(self, entry: Entry) -> None:
        """Counts a failure of ``entry``: its passes in a row start again from 0."""
        if entry.path is not None and entry.passes:
            entry.passes = 0
            write_atomically(Path(entry.path), entry.to_json())

    def forget(self, entry: Entry) -> None:
        """Deletes ``entry`` and the timeline saved beside it."""
        if entry.path is not None:
            for path in (Path(entry.path), Path(entry.path).with_suffix(".html")):
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
