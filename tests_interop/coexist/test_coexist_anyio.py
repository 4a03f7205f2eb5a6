"""The quiesce plugin beside anyio's pytest plugin in one session, with no recipe (skipped
where anyio is not installed)."""

from __future__ import annotations

import asyncio

import pytest

import quiesce

anyio = pytest.importorskip("anyio")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_anyio_marked() -> None:
    assert not isinstance(asyncio.get_running_loop(), quiesce.Loop)
    await anyio.sleep(0)


async def test_anyio_by_fixture(anyio_backend: str) -> None:
    assert not isinstance(asyncio.get_running_loop(), quiesce.Loop)


@pytest.mark.quiesce
async def test_quiesce_marked() -> None:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, quiesce.Loop)
    await anyio.sleep(600)  # anyio's asyncio functions work on quiesce too
    assert loop.time() == 600.0
