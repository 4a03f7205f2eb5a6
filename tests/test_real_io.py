"""The virtual clock next to real sockets, servers, subprocesses and threads.

Each test runs a real library or a real peer (aiohttp, websockets and aiosqlite are test
dependencies; servers listen on loopback and a child process is stopped by pid) and checks both
the result, which must be what stock asyncio gives, and a generous bound on the wall time: a
test of a web app or a thread-backed driver gains virtual time too. Wall bounds are bounds on a
hang, not timings: the runs they guard take milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, AsyncIterator, Callable, Iterator, List, Tuple
from unittest import mock

import aiohttp
import aiosqlite
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed

import quiesce
import quiesce._outside
from quiesce._outside import PARKED, RUNNING, TIMED_WAIT, WAITING, _state_from_syscall

# A bound far above what each run needs (milliseconds) and far below the virtual time it covers.
WALL_BOUND = 10.0


def run_timed(loop: quiesce.Loop, main: Any) -> Tuple[Any, float]:
    """Runs ``main`` to completion on ``loop``; returns its result and the real seconds taken."""
    started = time.monotonic()
    result = loop.run_until_complete(main)
    return result, time.monotonic() - started


# -- servers in this process --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def idle_loopback_connection() -> AsyncIterator[asyncio.StreamWriter]:
    """A server of this loop on loopback and an open, idle client connection to it (its
    writer); everything is closed on the way out."""
    accepted: List[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda r, w: accepted.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield writer
    finally:
        for served in accepted:
            served.close()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()


def test_aiohttp_test_client_route_and_timeout_take_virtual_time(loop: quiesce.Loop) -> None:
    """A 30 s route and a 5 s client timeout, with aiohttp's own TestServer and TestClient."""

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(text="slow done")

    async def forever(request: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        return web.Response(text="never")

    async def main() -> Tuple[str, float, str, float]:
        app = web.Application()
        app.router.add_get("/slow", slow)
        app.router.add_get("/forever", forever)
        async with TestClient(TestServer(app)) as client:
            started = loop.time()
            response = await client.get("/slow")
            text = await response.text()
            slow_took = loop.time() - started
            started = loop.time()
            try:
                await client.get("/forever", timeout=aiohttp.ClientTimeout(total=5))
                outcome = "answered"
            except asyncio.TimeoutError:
                outcome = "timed out"
            return text, slow_took, outcome, loop.time() - started

    (text, slow_took, outcome, timeout_took), wall = run_timed(loop, main())
    assert (text, outcome) == ("slow done", "timed out")
    assert slow_took == pytest.approx(30.0)
    assert timeout_took == pytest.approx(5.0)
    assert wall < WALL_BOUND


def test_streams_server_and_client_take_virtual_time(loop: quiesce.Loop) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                await asyncio.sleep(float(line))
                writer.write(b"slept " + line)
                await writer.drain()
        finally:
            writer.close()

    async def main() -> Tuple[bytes, float, str]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"30\n")
            answer = await reader.readline()
            took = loop.time()
            writer.write(b"3600\n")
            try:
                await asyncio.wait_for(reader.readline(), 5)
                outcome = "answered"
            except asyncio.TimeoutError:
                outcome = "timed out"
            return answer, took, outcome
        finally:
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()

    (answer, took, outcome), wall = run_timed(loop, main())
    assert (answer, outcome) == (b"slept 30\n", "timed out")
    assert took == pytest.approx(30.0)
    assert loop.time() >= 35.0
    assert wall < WALL_BOUND


def test_websockets_client_and_server_take_virtual_time(loop: quiesce.Loop) -> None:
    """websockets' keepalive pings (every 20 s) run on the virtual clock too."""

    async def echo_later(connection: ServerConnection) -> None:
        try:
            async for message in connection:
                await asyncio.sleep(float(message))
                await connection.send(f"after {message}")
        except ConnectionClosed:
            pass

    async def main() -> Tuple[str, float, str]:
        async with ws_serve(echo_later, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            async with ws_connect(f"ws://127.0.0.1:{port}") as client:
                await client.send("45")
                answer = str(await client.recv())
                took = loop.time()
                await client.send("3600")
                try:
                    await asyncio.wait_for(client.recv(), 5)
                    outcome = "answered"
                except asyncio.TimeoutError:
                    outcome = "timed out"
                return answer, took, outcome

    (answer, took, outcome), wall = run_timed(loop, main())
    assert (answer, outcome) == ("after 45", "timed out")
    assert took == pytest.approx(45.0, abs=0.1)
    assert wall < WALL_BOUND


def test_deadlock_behind_an_in_process_server_is_reported_at_once(
    make_loop: Callable[..., quiesce.Loop],
) -> None:
    """A handler waits on an Event nobody sets: the listening socket and the idle connection are
    this loop's own, so nothing can ever wake it. Deadlock, not the watchdog's minute."""
    loop = make_loop()
    never: List[asyncio.Event] = []

    async def stuck(request: web.Request) -> web.Response:
        await never[0].wait()
        return web.Response(text="unreachable")

    async def main() -> None:
        never.append(asyncio.Event())
        app = web.Application()
        app.router.add_get("/stuck", stuck)
        async with TestClient(TestServer(app)) as client:
            await client.get("/stuck", timeout=aiohttp.ClientTimeout(total=None))

    started = time.monotonic()
    with pytest.raises(quiesce.Deadlock) as excinfo:
        loop.run_until_complete(main())
    assert time.monotonic() - started < WALL_BOUND
    assert excinfo.value.kind == "deadlock"
    message = str(excinfo.value)
    assert "Event.wait()" in message
    assert "in-process sockets and parked threads (listed below) can only be woken" in message
    assert "TCP listener 127.0.0.1:" in message
    assert "(read; _SelectorSocketTransport, ResponseHandler) [in-process, idle]" in message


def test_idle_connection_does_not_trip_the_watchdog_before_a_timer(
    make_loop: Callable[..., quiesce.Loop],
) -> None:
    """With an idle pooled connection open and ``watchdog=3``, ``sleep(10)`` is a timer like any
    other: the clock jumps to it."""
    loop = make_loop(watchdog=3)

    async def main() -> float:
        async with idle_loopback_connection():
            await asyncio.sleep(10)
            return loop.time()

    now, wall = run_timed(loop, main())
    assert now == pytest.approx(10.0)
    assert wall < WALL_BOUND


def test_a_connection_whose_reading_is_paused_is_still_in_process(loop: quiesce.Loop) -> None:
    """Flow control pauses a transport's reading (a StreamReader over its limit does): the
    socket leaves the selector, but it is still this loop's, so its peer is in-process and a
    long sleep is a jump, not an hour of real time."""

    async def main() -> float:
        async with idle_loopback_connection() as writer:
            writer.transport.pause_reading()  # type: ignore[attr-defined]
            await asyncio.sleep(3600)
            return loop.time()

    now, wall = run_timed(loop, main())
    assert now == pytest.approx(3600.0)
    assert wall < WALL_BOUND


def test_bytes_not_yet_sent_to_a_reading_peer_hold_the_clock(
    loop: quiesce.Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With small socket buffers, loopback sends queued bytes only as the peer reads and its
    kernel opens the window (CPython's SSL sendfile tests depend on it): bytes not yet sent to
    a peer this loop reads are in flight and hold the clock; to a peer whose reading is paused
    they can only move once the loop reads, and do not. (The kernel's count, SIOCOUTQNSD, is
    stubbed here: a real window stall is timing-dependent; test_sendfile exercises it.)"""
    listener = socket.create_server(("127.0.0.1", 0))
    sender = socket.create_connection(listener.getsockname())
    receiver, _ = listener.accept()
    unsent = {sender.fileno(): 7}
    monkeypatch.setattr(quiesce._outside, "_unsent_bytes", lambda fd: unsent.get(fd, 0))
    try:
        for sock in (sender, receiver):
            loop.add_reader(sock.fileno(), lambda: None)

        def sender_seen() -> Any:
            return {d.fd: d for d in loop.report().external.descriptors}[sender.fileno()]

        seen = sender_seen()
        assert seen.in_process and seen.in_flight == 7 and seen.holds_clock
        assert "in-process, 7 bytes in flight: holds the clock" in str(seen)
        # The receiver stops reading (a paused transport keeps no reader, only a write
        # interest, if any): its peer's unsent bytes wait for the loop.
        loop.remove_reader(receiver.fileno())
        loop.add_writer(receiver.fileno(), lambda: None)
        seen = sender_seen()
        assert seen.in_process and seen.in_flight == 0 and not seen.holds_clock
        assert quiesce._outside.outside_facts(loop).external_io == 0
    finally:
        loop.remove_writer(receiver.fileno())
        loop.remove_reader(sender.fileno())
        for sock in (sender, receiver, listener):
            sock.close()


def test_the_kernel_send_queue_can_be_asked() -> None:
    left = socket.create_server(("127.0.0.1", 0))
    right = socket.create_connection(left.getsockname())
    try:
        assert quiesce._outside._unsent_bytes(right.fileno()) == 0
        assert quiesce._outside._unsent_bytes(-1) == 0  # a bad descriptor is not a crash
    finally:
        right.close()
        left.close()


# -- peers outside the loop ---------------------------------------------------------------------


@pytest.fixture
def chatty_peer() -> Iterator[socket.socket]:
    """A socket whose peer, a plain thread, sends a line every 5 ms of real time until the test
    ends (the chatter a test wants to time out on, not a wait)."""
    ours, theirs = socket.socketpair()
    stop = threading.Event()

    def chatter() -> None:
        while not stop.wait(0.005):
            try:
                theirs.sendall(b"tick\n")
            except OSError:
                return

    thread = threading.Thread(target=chatter, name="chatty-peer")
    thread.start()
    try:
        yield ours
    finally:
        stop.set()
        thread.join()
        ours.close()
        theirs.close()


def test_timeout_fires_while_a_peer_keeps_sending(
    loop: quiesce.Loop, chatty_peer: socket.socket
) -> None:
    """Data that keeps arriving does not stop time: the 0.2 s timeout fires after 0.2 s."""

    async def read_until_end(reader: asyncio.StreamReader) -> int:
        ticks = 0
        while await reader.readline() != b"END\n":
            ticks += 1
        return ticks  # pragma: no cover - the peer never says END

    async def run() -> Tuple[str, float]:
        reader, writer = await asyncio.open_connection(sock=chatty_peer)
        started = loop.time()
        try:
            await asyncio.wait_for(read_until_end(reader), 0.2)
            outcome = "read END"
        except asyncio.TimeoutError:
            outcome = "timed out"
        took = loop.time() - started
        writer.close()
        await writer.wait_closed()
        return outcome, took

    (outcome, took), wall = run_timed(loop, run())
    assert outcome == "timed out"
    assert took == pytest.approx(0.2)
    assert wall < WALL_BOUND


PEER_SCRIPT = """
import socket, sys, time
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
connection, _ = listener.accept()
request = connection.makefile("rb").readline()
time.sleep(0.5)  # the peer's own work, in its own (real) time
connection.sendall(b"answer to " + request)
connection.makefile("rb").read()  # until the client hangs up
"""


@pytest.fixture
def external_peer() -> Iterator[int]:
    """A server in a child process (not a child of the loop); yields its port, kills it by pid."""
    child = subprocess.Popen(
        [sys.executable, "-c", PEER_SCRIPT], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        assert child.stdout is not None
        yield int(child.stdout.readline())
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert child.stdout is not None
        child.stdout.close()


def test_external_peer_is_not_timed_out_early(loop: quiesce.Loop, external_peer: int) -> None:
    """A peer in another process takes 0.5 s of its own time: a 2 s timeout must not fire. The
    socket's peer is outside the process, so the clock follows real time while it is open."""

    async def main() -> Tuple[bytes, float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", external_peer)
        started = loop.time()
        try:
            writer.write(b"ping\n")
            answer = await asyncio.wait_for(reader.readline(), 2)
            return answer, loop.time() - started
        finally:
            writer.close()
            await writer.wait_closed()

    (answer, took), wall = run_timed(loop, main())
    assert answer == b"answer to ping\n"
    assert 0.4 < took < 2
    assert wall < WALL_BOUND
    assert "External" not in str(loop.report())  # the connection is closed: nothing listed


def test_io_grace_lets_a_quiet_external_connection_go(
    make_loop: Callable[..., quiesce.Loop], external_peer: int
) -> None:
    """By default an open connection to another process holds the clock (its peer may answer
    any moment); with ``io_grace`` it lets go once it has been quiet that long."""
    loop = make_loop(io_grace=0.05)

    async def main() -> float:
        _, writer = await asyncio.open_connection("127.0.0.1", external_peer)
        try:
            await asyncio.sleep(600)
            return loop.time()
        finally:
            writer.close()
            await writer.wait_closed()

    now, wall = run_timed(loop, main())
    assert now == pytest.approx(600.0)
    assert wall < WALL_BOUND
    assert loop.io_grace == 0.05


def test_an_open_external_connection_is_named_in_the_report(
    loop: quiesce.Loop, external_peer: int
) -> None:
    async def main() -> str:
        _, writer = await asyncio.open_connection("127.0.0.1", external_peer)
        try:
            return str(loop.report())
        finally:
            writer.close()
            await writer.wait_closed()

    text = loop.run_until_complete(main())
    assert (
        f"-> 127.0.0.1:{external_peer} (read; _SelectorSocketTransport, StreamReaderProtocol) "
        "[external: holds the clock]"
    ) in text


# -- threads --------------------------------------------------------------------------------------


def test_plain_worker_thread_holds_the_clock_under_a_timeout(loop: quiesce.Loop) -> None:
    """A thread computing for real (no sleep) answers through call_soon_threadsafe; a 1 s
    timeout around it must not fire before it does."""

    def work(future: asyncio.Future, rounds: int) -> None:
        total = 0
        for i in range(rounds):
            total += i * i
        loop.call_soon_threadsafe(future.set_result, total)

    async def main() -> int:
        future = loop.create_future()
        worker = threading.Thread(target=work, args=(future, 200_000))
        worker.start()
        try:
            return await asyncio.wait_for(future, timeout=1)
        finally:
            worker.join()

    result, wall = run_timed(loop, main())
    assert result == sum(i * i for i in range(200_000))
    assert wall < WALL_BOUND


def test_aiosqlite_under_wait_for(loop: quiesce.Loop) -> None:
    """aiosqlite runs every query on its own thread, parked on a queue between queries."""

    async def main() -> Tuple[List[Any], float]:
        async with aiosqlite.connect(":memory:") as db:
            await asyncio.wait_for(db.execute("create table t (x integer)"), timeout=1)
            for i in range(50):
                await asyncio.wait_for(db.execute("insert into t values (?)", (i,)), timeout=1)
            cursor = await asyncio.wait_for(db.execute("select sum(x) from t"), timeout=1)
            rows = await cursor.fetchall()
            # Between queries the thread is parked: a long sleep is a jump.
            started = loop.time()
            await asyncio.sleep(3600)
            return [tuple(row) for row in rows], loop.time() - started

    (rows, slept), wall = run_timed(loop, main())
    assert rows == [(sum(range(50)),)]
    assert slept == pytest.approx(3600.0)
    assert wall < WALL_BOUND


def test_parked_worker_thread_beside_a_long_sleep(loop: quiesce.Loop) -> None:
    jobs: queue.Queue = queue.Queue()
    worker = threading.Thread(target=jobs.get, name="parked-worker")
    worker.start()

    async def main() -> float:
        await asyncio.sleep(3600)
        return loop.time()

    try:
        now, wall = run_timed(loop, main())
        assert "'parked-worker' parked" in str(loop.report())
    finally:
        jobs.put(None)
        worker.join()
    assert now == pytest.approx(3600.0)
    assert wall < WALL_BOUND


def test_background_thread_never_holds_the_clock(loop: quiesce.Loop) -> None:
    """A watchdog thread in a timed wait (pytest-timeout's thread method, threading.Timer)
    would hold the clock at real pace; marked as background it never does."""
    stop = threading.Event()
    watcher = quiesce.background(threading.Thread(target=stop.wait, args=(600,)), loop=loop)
    watcher.start()

    async def main() -> float:
        await asyncio.sleep(300)
        return loop.time()

    try:
        now, wall = run_timed(loop, main())
        assert "background: never counts" in str(loop.report())
    finally:
        stop.set()
        watcher.join()
    assert now == pytest.approx(300.0)
    assert wall < WALL_BOUND


def test_background_thread_needs_a_quiesce_loop() -> None:
    stock = asyncio.new_event_loop()
    try:
        with pytest.raises(TypeError, match=r"background\(thread\) needs a quiesce.Loop"):
            quiesce.background(threading.Thread(target=print), loop=stock)
    finally:
        stock.close()


# -- a replaced clock, a busy loop ---------------------------------------------------------------


def test_patched_loop_time_is_honoured(loop: quiesce.Loop) -> None:
    """As aiolimiter's own suite does: ``loop.time`` patched on the instance decides when
    ``call_later`` timers are due, as on stock asyncio."""
    fired: List[float] = []

    async def main() -> None:
        running = asyncio.get_running_loop()
        with mock.patch.object(running, "time") as clock:
            clock.return_value = 100.0
            handle = running.call_later(5, lambda: fired.append(running.time()))
            assert handle.when() == 105.0
            await asyncio.sleep(0)
            assert fired == []
            clock.return_value = 105.0
            for _ in range(3):
                await asyncio.sleep(0)
        assert fired == [105.0]

    loop.run_until_complete(main())


def test_subclass_time_is_honoured() -> None:
    class OffsetLoop(quiesce.Loop):
        def time(self) -> float:
            return super().time() + 1000.0

    loop = OffsetLoop()
    try:

        async def main() -> Tuple[float, float]:
            running = asyncio.get_running_loop()
            started = running.time()
            await asyncio.sleep(30)
            return started, running.time()

        (started, ended), wall = run_timed(loop, main())
    finally:
        loop.close()
    assert started >= 1000.0
    assert ended - started == pytest.approx(30.0)
    assert wall < WALL_BOUND


def test_busy_loop_waiting_for_a_timer_ends(loop: quiesce.Loop) -> None:
    """``while not fired: await asyncio.sleep(0)`` never blocks; on a real clock the timer fires
    once its time has passed, and each busy turn counts ``turn_time`` on the virtual one."""

    async def main() -> Tuple[int, float]:
        fired = asyncio.Event()
        asyncio.get_running_loop().call_later(0.01, fired.set)
        turns = 0
        while not fired.is_set():
            turns += 1
            await asyncio.sleep(0)
        return turns, asyncio.get_running_loop().time()

    (turns, now), wall = run_timed(loop, main())
    assert now == pytest.approx(0.01)
    assert turns == pytest.approx(0.01 / loop.turn_time, rel=0.01)
    assert wall < WALL_BOUND


def test_run_until_blocked_never_moves_the_clock_for_a_busy_loop(
    make_loop: Callable[..., quiesce.Loop],
) -> None:
    loop = make_loop()

    async def spin() -> None:
        while True:
            await asyncio.sleep(0)

    loop.call_later(0.001, lambda: None)
    task = loop.create_task(spin())
    with pytest.raises(quiesce.BudgetExceeded):
        loop.run_until_blocked(max_steps=5000)
    assert loop.time() == 0.0
    task.cancel()


# -- how the clock tells thread states apart -------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "state"),
    [
        ("running", RUNNING),
        ("-1 0x7ffd 0x0", RUNNING),
        # futex(addr, FUTEX_WAIT_BITSET|FUTEX_PRIVATE, val, NULL): a lock of this process.
        ("202 0x7f00 0x189 0x0 0x0 0x0 0xffffffff 0x7ffd 0x7f00", PARKED),
        # ... with a timeout: it will come back by itself.
        ("202 0x7f00 0x189 0x0 0x7ffd1000 0x0 0xffffffff 0x7ffd 0x7f00", TIMED_WAIT),
        # a shared futex (another process may wake it)
        ("202 0x7f00 0x9 0x0 0x0 0x0 0xffffffff 0x7ffd 0x7f00", WAITING),
        # FUTEX_WAKE: on its way
        ("202 0x7f00 0x81 0x1 0x0 0x0 0x0 0x7ffd 0x7f00", RUNNING),
        # poll(fds, 1, -1) and poll(fds, 1, 500)
        ("7 0x7ffd 0x1 0xffffffff 0x0 0x0 0x0 0x7ffd 0x7f00", WAITING),
        ("7 0x7ffd 0x1 0x1f4 0x0 0x0 0x0 0x7ffd 0x7f00", TIMED_WAIT),
        # epoll_wait(epfd, events, n, -1) as a 64-bit register
        ("232 0x3 0x7ffd 0x400 0xffffffffffffffff 0x0 0x0 0x7ffd 0x7f00", WAITING),
        # select(n, r, w, x, NULL) and with a timeval
        ("23 0x4 0x7ffd 0x0 0x0 0x0 0x0 0x7ffd 0x7f00", WAITING),
        ("23 0x4 0x7ffd 0x0 0x0 0x7ffd2000 0x0 0x7ffd 0x7f00", TIMED_WAIT),
        # pause()
        ("34 0x0 0x0 0x0 0x0 0x0 0x0 0x7ffd 0x7f00", WAITING),
        # any other system call is work in progress
        ("1 0x1 0x7ffd 0x10 0x0 0x0 0x0 0x7ffd 0x7f00", RUNNING),
    ],
)
def test_thread_state_from_its_system_call(line: str, state: str) -> None:
    assert _state_from_syscall(line, "x86_64") == state


def test_a_futex_wait_whose_word_has_changed_is_a_thread_on_its_way() -> None:
    # Sleeping on value 0, but the word is now 1 (the lock was released): it has been woken.
    parked = "202 0x7f00 0x189 0x0 0x0 0x0 0xffffffff 0x7ffd 0x7f00"
    assert _state_from_syscall(parked, "x86_64", word=1) == RUNNING
    assert _state_from_syscall(parked, "x86_64", word=0) == PARKED


def test_unknown_system_call_formats_are_not_guessed() -> None:
    assert _state_from_syscall("202 0x1", "x86_64") is None
    assert _state_from_syscall("garbage here", "x86_64") is None
    assert _state_from_syscall("running", "sparc") is None
