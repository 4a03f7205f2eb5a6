"""pytest-asyncio's auto mode and quiesce in one session: an explicit ``@pytest.mark.quiesce``
wins over the ``asyncio`` mark auto mode puts on every async test, and the async fixtures such
a test requests (plain ones, which auto mode takes over, and ``@pytest_asyncio.fixture`` ones)
run on its quiesce loop; everything else stays pytest-asyncio's."""

from __future__ import annotations

import asyncio
import sys
from typing import AsyncIterator, List

import pytest
import pytest_asyncio

import quiesce

loops: List[asyncio.AbstractEventLoop] = []


async def nap(seconds: float) -> None:
    """Sleeps ``seconds`` on a quiesce loop's virtual clock; on pytest-asyncio's (real) loop,
    only yields, so that no test waits in real time."""
    on_quiesce = isinstance(asyncio.get_running_loop(), quiesce.Loop)
    await asyncio.sleep(seconds if on_quiesce else 0)


@pytest.fixture
async def plain_resource() -> AsyncIterator[asyncio.AbstractEventLoop]:
    await nap(5)
    yield asyncio.get_running_loop()
    await nap(1)


@pytest_asyncio.fixture
async def marked_resource() -> asyncio.AbstractEventLoop:
    await nap(7)
    return asyncio.get_running_loop()


@pytest_asyncio.fixture
def marked_sync_resource() -> asyncio.AbstractEventLoop:
    # pytest-asyncio 1.x makes its own loop the current one while this runs; quiesce tests
    # see theirs. (Event loop policies are deprecated from 3.14 on, where get_event_loop()
    # returns the current loop without making one.)
    if sys.version_info >= (3, 14):
        return asyncio.get_event_loop()
    return asyncio.get_event_loop_policy().get_event_loop()


async def test_unmarked_runs_on_pytest_asyncio(plain_resource: asyncio.AbstractEventLoop) -> None:
    loop = asyncio.get_running_loop()
    assert not isinstance(loop, quiesce.Loop)
    assert plain_resource is loop
    loops.append(loop)


@pytest.mark.quiesce
async def test_marked_runs_on_quiesce(
    plain_resource: asyncio.AbstractEventLoop, marked_resource: asyncio.AbstractEventLoop
) -> None:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, quiesce.Loop)
    assert plain_resource is loop and marked_resource is loop
    assert loop.time() == 12.0  # both fixtures slept on the virtual clock
    loops.append(loop)


@pytest.mark.quiesce(seed=3)
async def test_marked_with_its_loop_fixture(
    quiesce_loop: quiesce.Loop, marked_sync_resource: asyncio.AbstractEventLoop
) -> None:
    assert asyncio.get_running_loop() is quiesce_loop and quiesce_loop.seed == 3
    assert marked_sync_resource is quiesce_loop


@pytest.mark.quiesce(runs=20)
async def test_explored_with_fixtures(
    quiesce_loop: quiesce.Loop, marked_resource: asyncio.AbstractEventLoop
) -> None:
    loop = asyncio.get_running_loop()
    assert quiesce_loop is loop and marked_resource is loop
    results: List[int] = []

    async def worker(n: int) -> None:
        await asyncio.sleep(0)
        results.append(n)

    await asyncio.gather(*(worker(n) for n in range(3)))
    assert sorted(results) == [0, 1, 2]


class TestInAClass:
    @pytest_asyncio.fixture
    async def method_resource(self) -> str:
        await nap(2)
        return type(self).__name__

    @pytest.mark.quiesce
    async def test_marked_method(self, method_resource: str) -> None:
        assert method_resource == "TestInAClass"
        assert asyncio.get_running_loop().time() == 2.0

    async def test_unmarked_method(self, method_resource: str) -> None:
        assert not isinstance(asyncio.get_running_loop(), quiesce.Loop)


@pytest.mark.quiesce
@pytest.mark.parametrize("delay", [1, 2])
async def test_marked_and_parametrized(delay: int) -> None:
    await asyncio.sleep(delay * 60)
    assert asyncio.get_running_loop().time() == delay * 60


def test_each_ran_on_its_own_loop() -> None:
    assert len(loops) == 2 and loops[0] is not loops[1]
    assert isinstance(loops[1], quiesce.Loop) and loops[1].is_closed()
