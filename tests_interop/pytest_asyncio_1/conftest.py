"""Recipe: run an existing pytest-asyncio 1.x suite on quiesce. Copy into your conftest.py.

pytest-asyncio 1.4 and later ask a hook for their loop factories; 1.0 to 1.3 make their loops
through the ``event_loop_policy`` fixture (whose override 1.4+ deprecates). Keep the half
that matches your version, or both as here.
"""

from __future__ import annotations

import asyncio
import re
from importlib.metadata import version
from typing import Any, Callable, Dict

import pytest

import quiesce

PYTEST_ASYNCIO = tuple(int(part) for part in re.findall(r"\d+", version("pytest-asyncio"))[:2])


# pytest-asyncio >= 1.4: every asyncio test (and its async fixtures) runs on a loop from this
# factory. optionalhook: older versions, which lack the hook, ignore it instead of failing.
@pytest.hookimpl(optionalhook=True)
def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"quiesce": quiesce.Loop}


if PYTEST_ASYNCIO < (1, 4):
    # pytest-asyncio 1.0 - 1.3: the runner makes its loop through this policy.
    @pytest.fixture(scope="session")
    def event_loop_policy() -> Any:
        return quiesce.EventLoopPolicy()
