"""Recipe: run an existing pytest-asyncio 0.21 - 0.26 suite on quiesce. Copy into your
conftest.py.

0.23 and later make their loops through the ``event_loop_policy`` fixture (and deprecate
overriding ``event_loop``); 0.21 and 0.22 have no such fixture, so there the ``event_loop``
fixture itself is replaced. Keep the half that matches your version, or both as here.
"""

from __future__ import annotations

import re
from importlib.metadata import version
from typing import Any, Iterator

import pytest

import quiesce

PYTEST_ASYNCIO = tuple(int(part) for part in re.findall(r"\d+", version("pytest-asyncio"))[:2])

if PYTEST_ASYNCIO >= (0, 23):
    # pytest-asyncio 0.23 - 0.26 (and 1.0 - 1.3): every loop comes from this policy.
    @pytest.fixture(scope="session")
    def event_loop_policy() -> Any:
        return quiesce.EventLoopPolicy()

else:
    # pytest-asyncio 0.21 - 0.22: one fresh quiesce loop per test.
    @pytest.fixture
    def event_loop() -> Iterator[quiesce.Loop]:
        loop = quiesce.Loop()
        yield loop
        loop.close()
