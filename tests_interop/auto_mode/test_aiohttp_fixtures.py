"""pytest-aiohttp's fixtures (built on pytest-asyncio) in a quiesce test: the test server and
client run on the test's quiesce loop, so a 30-second route takes no real time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

import quiesce


async def slow(request: Any) -> Any:
    await asyncio.sleep(30)
    return web.Response(text="done")


def make_app() -> Any:
    app = web.Application()
    app.router.add_get("/slow", slow)
    return app


@pytest.mark.quiesce
async def test_client_fixture_runs_on_quiesce(aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app())
    loop = asyncio.get_running_loop()
    assert isinstance(loop, quiesce.Loop)
    response = await client.get("/slow")
    assert await response.text() == "done"
    assert loop.time() >= 30.0


@pytest.mark.quiesce
async def test_server_fixture_runs_on_quiesce(aiohttp_server: Any) -> None:
    server = await aiohttp_server(make_app())
    assert server.app is not None
    assert isinstance(asyncio.get_running_loop(), quiesce.Loop)
