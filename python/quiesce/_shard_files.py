"""Progress of the shards of one exploration, shared through files between pytest-xdist
workers on one machine.

Each shard writes only its own file (atomically, by renaming a complete one over it) and reads
the others', so concurrent workers never see a half-written record. A record says that every
run the shard owns below ``passed_through`` passed, and the lowest failing run index it knows
(its own, or one it made for another shard). Files are throttled by the caller (every few
runs); a stale record only costs runs, never correctness: a shard that knows less runs more.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Dict, Optional, Tuple

from quiesce._explore import ShardProgress
from quiesce._files import write_atomically


def progress_directory(run_id: str, nodeid: str) -> Path:
    """Where the shards of test ``nodeid`` in test run ``run_id`` keep their records."""
    digest = hashlib.sha256(nodeid.encode()).hexdigest()[:24]
    return Path(tempfile.gettempdir()) / f"quiesce-shards-{run_id}" / digest


class FileShardProgress(ShardProgress):
    """The progress of shard ``number`` of ``count`` in ``directory``, and the others'."""

    shared = True

    def __init__(self, directory: Path, number: int, count: int) -> None:
        self.directory = directory
        self.number = number
        self.count = count
        self._others: Dict[int, Tuple[int, Optional[int]]] = {}
        self._reads = 0

    def _path(self, number: int) -> Path:
        return self.directory / f"{number}-of-{self.count}.json"

    def record(self, passed_through: int, failed: Optional[int]) -> None:
        """Writes this shard's record (if it cannot, the others only make more runs)."""
        text = json.dumps({"passed_through": passed_through, "failed": failed})
        try:
            write_atomically(self._path(self.number), text)
        except OSError:
            pass

    def refresh(self) -> None:
        """The next question reads the other shards' files again."""
        self._reads = 0

    def _read(self) -> Dict[int, Tuple[int, Optional[int]]]:
        # Reading every shard's file on every run would cost more than a small test's run:
        # the records are read again every 8 questions.
        if self._reads % 8 == 0:
            for number in range(1, self.count + 1):
                if number == self.number:
                    continue
                try:
                    record = json.loads(self._path(number).read_text(encoding="utf-8"))
                    self._others[number] = (int(record["passed_through"]), record["failed"])
                except (OSError, ValueError, KeyError, TypeError):
                    continue  # not written yet
        self._reads += 1
        return self._others

    def lowest_failure(self) -> Optional[int]:
        """The lowest failing run index another shard has recorded."""
        failures = [failed for _, failed in self._read().values() if failed is not None]
        return min(failures) if failures else None

    def passed_elsewhere(self, index: int) -> bool:
        """Whether run ``index``'s owner recorded it as passed."""
        owner = index % self.count + 1
        record = self._read().get(owner)
        return record is not None and index < record[0]
