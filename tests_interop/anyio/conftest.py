"""Recipe: run an existing anyio test suite (anyio's pytest plugin, anyio >= 4.0) on quiesce.
Copy into your conftest.py.

anyio's asyncio backend takes a ``loop_factory`` option; anyio's own ``anyio_backend``
fixture is module-scoped, so this override is session-scoped (a wider scope is always
allowed). Trio is left out: quiesce is an asyncio loop.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import pytest

import quiesce


@pytest.fixture(scope="session")
def anyio_backend() -> Tuple[str, Dict[str, Any]]:
    return ("asyncio", {"loop_factory": quiesce.Loop})
