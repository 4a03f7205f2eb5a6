"""The quiesce plugin beside pytest-asyncio (strict mode) in one session, with no recipe: each
plugin runs its own tests on its own loops, and quiesce takes only the tests marked for it."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, List

import pytest
import pytest_asyncio

import quiesce

loops: List[asyncio.AbstractEventLoop] = []


@pytest_asyncio.fixture
async def asyncio_resource() -> AsyncIterator[asyncio.AbstractEventLoop]:
    yield asyncio.get_running_loop()


@pytest.fixture
async def quiesce_resource() -> AsyncIterator[asyncio.AbstractEventLoop]:
    await asyncio.sleep(60)
    yield asyncio.get_running_loop()


@pytest.mark.quiesce
async def test_quiesce_marked(quiesce_loop: quiesce.Loop) -> None:
    loop = asyncio.get_running_loop()
    assert loop is quiesce_loop
    await asyncio.sleep(3600)
    assert loop.time() == 3600.0
    loops.append(loop)


@pytest.mark.quiesce(seed=4)
async def test_quiesce_with_its_async_fixture(
    quiesce_resource: asyncio.AbstractEventLoop,
) -> None:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, quiesce.Loop) and loop.seed == 4
    assert quiesce_resource is loop and loop.time() == 60.0


@pytest.mark.asyncio
async def test_pytest_asyncio_marked(asyncio_resource: asyncio.AbstractEventLoop) -> None:
    loop = asyncio.get_running_loop()
    assert not isinstance(loop, quiesce.Loop)
    assert asyncio_resource is loop
    loops.append(loop)


@pytest.mark.quiesce
async def test_quiesce_again() -> None:
    assert isinstance(asyncio.get_running_loop(), quiesce.Loop)


def test_each_ran_on_its_own_loop() -> None:
    assert len(loops) == 2 and loops[0] is not loops[1]
    assert loops[0].is_closed()
