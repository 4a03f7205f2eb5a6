"""Which test_asyncio modules the harness runs, which it leaves out, and why.

Module names are those of ``Lib/test/test_asyncio`` (imported as ``test.test_asyncio.NAME``).
A module listed in :data:`INCLUDED` runs on every interpreter that ships it; the ``since``
column only documents where it first appears.
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Tuple


class Module(NamedTuple):
    """An included module: what it covers, and the first CPython that ships it."""

    name: str
    covers: str
    since: Tuple[int, int] = (3, 9)


#: Modules run against quiesce.Loop (in this order).
INCLUDED: List[Module] = [
    Module("test_futures", "Future and its callbacks (C and Python), wrap_future"),
    Module("test_futures2", "Future tracebacks and awaiting futures"),
    Module("test_tasks", "Task, gather, shield, wait, as_completed, sleep, timeouts"),
    Module("test_locks", "Lock, Event, Condition, Semaphore, BoundedSemaphore, Barrier"),
    Module("test_queues", "Queue, PriorityQueue, LifoQueue"),
    Module("test_context", "contextvars and the loop"),
    Module("test_pep492", "async/await, async with/for, coroutine wrappers"),
    Module("test_runners", "asyncio.run, asyncio.Runner"),
    Module("test_waitfor", "asyncio.wait_for"),
    Module("test_timeouts", "asyncio.timeout, timeout_at", (3, 11)),
    Module("test_taskgroups", "asyncio.TaskGroup", (3, 11)),
    Module("test_eager_task_factory", "eager tasks", (3, 12)),
    Module("test_staggered", "staggered_race", (3, 13)),
    Module("test_threads", "asyncio.to_thread"),
    Module("test_events", "the event-loop test mixins: callbacks, timers, I/O, signals, ..."),
    Module("test_streams", "StreamReader, StreamWriter, open_connection, start_server"),
    Module("test_server", "Server objects: start, serve_forever, close"),
    Module("test_sock_lowlevel", "sock_recv, sock_sendall, sock_connect, sock_accept, ..."),
    Module("test_buffered_proto", "BufferedProtocol over real sockets"),
    Module("test_sendfile", "loop.sendfile and sock_sendfile"),
    Module("test_ssl", "SSL transports over real sockets", (3, 11)),
    Module("test_sslproto", "SSL protocol, start_tls over real sockets"),
    Module("test_subprocess", "create_subprocess_exec/shell, pipes, child watchers"),
    Module("test_unix_events", "signals, UNIX sockets, policy (see EXCLUDED_TESTS)"),
    Module("test_graph", "capture_call_graph, format_call_graph: awaited-by edges", (3, 14)),
    Module("test_free_threading", "all_tasks and run_coroutine_threadsafe across threads", (3, 14)),
]

#: Modules left out, with the reason (rendered into README.md).
EXCLUDED: Dict[str, str] = {
    "test_base_events": (
        "Tests `base_events.BaseEventLoop`'s private internals: it builds bare "
        "`BaseEventLoop()` objects with a mocked selector and asserts on `_run_once`'s heap "
        "handling, `_ready`/`_scheduled` contents, `_process_events` calls and select "
        "timeouts - the very machinery quiesce replaces with native code, so its "
        "assertions say nothing about loop behaviour."
    ),
    "test_selector_events": (
        "Tests `BaseSelectorEventLoop` and the selector transports' private internals "
        "against a `TestBaseSelectorEventLoop` with a `Mock` selector and mock sockets "
        "(asserting `_add_reader` calls, transport buffers); no real loop turn runs."
    ),
    "test_proactor_events": "Proactor event loop: Windows only (mocked proactor elsewhere).",
    "test_windows_events": "Windows event loop and proactor: skipped on Linux.",
    "test_windows_utils": "Windows pipes and Popen helpers: skipped on Linux.",
    "test_protocols": (
        "Tests the abstract Protocol base classes' default methods; never makes or runs a loop."
    ),
    "test_transports": (
        "Tests the abstract Transport base classes with a `Mock` loop; never makes or runs a loop."
    ),
    "test_tools": (
        "Tests the `python -m asyncio ps`/`pstree` formatting (3.14+) on hand-made records of "
        "another process's tasks; never makes or runs a loop."
    ),
}

#: Tests of included modules left out in every mode (stock too), as
#: ``(module, "Class" or "Class.test_name", reason)``.
EXCLUDED_TESTS: List[Tuple[str, str, str]] = [
    (
        "test_unix_events",
        cls,
        "Tests the pipe transports' internals against `test_utils.TestLoop`'s fake I/O "
        "registry: mock pipes with made-up file descriptors, and assertions on "
        "`loop.readers`/`loop.writers`/`loop.assert_reader()`, which only `TestLoop` has. "
        "A real selector loop (stock's included) cannot run them.",
    )
    for cls in ("UnixReadPipeTransportTests", "UnixWritePipeTransportTests")
]

#: Modules of the fast subset (``run.py --fast``).
FAST: List[str] = [
    "test_futures",
    "test_futures2",
    "test_tasks",
    "test_locks",
    "test_queues",
    "test_context",
    "test_pep492",
    "test_runners",
    "test_waitfor",
    "test_timeouts",
    "test_taskgroups",
    "test_graph",
]

#: Modules the self-check runs with the deliberately broken loops.
SELF_CHECK: List[str] = ["test_locks", "test_queues"]


def module_by_name(name: str) -> Optional[Module]:
    """The included module called ``name``, if any."""
    for module in INCLUDED:
        if module.name == name:
            return module
    return None


def excluded_tests(module: str) -> List[Tuple[str, str]]:
    """``(pattern, reason)`` for each test of ``module`` left out in every mode."""
    return [(pattern, reason) for mod, pattern, reason in EXCLUDED_TESTS if mod == module]
