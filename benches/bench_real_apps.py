"""Wall time of real-application tests: virtual time next to real sockets and threads.

Each scenario is a test a user would write against a real library, run on quiesce.Loop (virtual
clock) and, with ``--loops asyncio,quiesce``, on stock asyncio, which sleeps for real (about
55 s in all there). Prints one Markdown row per scenario and loop: what the test observed (the
same on every loop, but for stock's real-clock jitter) and the wall seconds it took.

    python benches/bench_real_apps.py                      # quiesce only
    python benches/bench_real_apps.py --loops asyncio,quiesce

Needs aiohttp and aiosqlite (pinned in tests/requirements/).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any, Awaitable, Callable, Dict, Tuple

import aiohttp
import aiosqlite
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import quiesce


async def aiohttp_route_and_timeout() -> Tuple[Any, ...]:
    """aiohttp's TestServer and TestClient: a 30 s route, then a 5 s client timeout."""
    loop = asyncio.get_running_loop()

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(text="slow done")

    async def forever(request: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        return web.Response(text="never")

    app = web.Application()
    app.router.add_get("/slow", slow)
    app.router.add_get("/forever", forever)
    async with TestClient(TestServer(app)) as client:
        started = loop.time()
        text = await (await client.get("/slow")).text()
        slow_took = round(loop.time() - started, 1)
        started = loop.time()
        try:
            await client.get("/forever", timeout=aiohttp.ClientTimeout(total=5))
            outcome = "answered"
        except asyncio.TimeoutError:
            outcome = "timeout"
        return text, slow_took, outcome, round(loop.time() - started, 1)


async def stream_server_idle_connection() -> Tuple[Any, ...]:
    """asyncio.start_server and open_connection: a reply after 10 s, an idle connection open."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        await asyncio.sleep(10)
        writer.write(line.upper())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping\n")
        reply = await reader.readline()
        writer.close()
        await writer.wait_closed()
    return (reply.decode().strip(),)


async def aiosqlite_under_wait_for() -> Tuple[Any, ...]:
    """A thread-backed driver under wait_for(timeout=1), then a 10 s sleep beside its thread."""
    loop = asyncio.get_running_loop()
    async with aiosqlite.connect(":memory:") as db:
        total = 0
        for _ in range(50):
            cursor = await asyncio.wait_for(db.execute("select 1 + 1"), timeout=1)
            total += (await cursor.fetchone())[0]
        started = loop.time()
        await asyncio.sleep(10)
        return total, round(loop.time() - started)


SCENARIOS: Dict[str, Callable[[], Awaitable[Tuple[Any, ...]]]] = {
    "aiohttp: 30 s route + 5 s client timeout": aiohttp_route_and_timeout,
    "streams: 10 s reply, idle connection": stream_server_idle_connection,
    "aiosqlite: 50 wait_for(timeout=1) + sleep(10)": aiosqlite_under_wait_for,
}

LOOPS: Dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "quiesce": quiesce.Loop,
}


def main() -> None:
    """Runs every scenario on every loop asked for and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", default="quiesce", help="comma-separated: asyncio,quiesce")
    loops = parser.parse_args().loops.split(",")
    unknown = sorted(set(loops) - set(LOOPS))
    if unknown:
        parser.error(f"unknown loop(s) {unknown}; choose from {sorted(LOOPS)}")
    print("| scenario | loop | observed | wall s |")
    print("| --- | --- | --- | ---: |")
    for name, scenario in SCENARIOS.items():
        for loop_name in loops:
            loop = LOOPS[loop_name]()
            started = time.perf_counter()
            try:
                observed = loop.run_until_complete(scenario())
            finally:
                loop.close()
            wall = time.perf_counter() - started
            print(f"| {name} | {loop_name} | {observed} | {wall:.2f} |", flush=True)


if __name__ == "__main__":
    main()
