"""What outside the loop could still make a callback runnable, and what it means for the clock.

The core's clock decision (``quiesce-core``'s ``idle`` module) needs to know, on a turn where
nothing is runnable, what is in flight outside the loop. This module looks, and the same
findings name each descriptor and thread in reports:

* **Watched descriptors.** A socket whose peer is another socket of this loop (a connection to a
  server of this loop, a socketpair or a Unix socket whose peer is this process) and a listening
  or unconnected datagram socket are *in-process*: once nothing is readable on them (the turn
  polls first), nothing can arrive on them before the loop itself sends something, so they do
  not hold the virtual clock. A pipe whose other end this process holds is in-process too. Any
  other descriptor (a connection to another process or host, a child's pipe, an eventfd) is
  *external*: while it is watched the virtual clock follows real time.
* **Threads.** A thread that is running, or in a timed wait (``time.sleep``, ``Event.wait(5)``),
  may call back on its own: it holds the clock at real pace, as an executor job does. A thread
  *parked* without a timeout on a lock, condition or queue of this process can only be woken by
  another thread, and one *waiting* indefinitely on a socket, pipe or signal only by something
  from outside: neither holds the clock. On Linux the state is read from
  ``/proc/self/task/<tid>/syscall`` (the system call the thread is blocked in, and its timeout);
  elsewhere only Python-level waits (``Condition.wait`` and what is built on it: ``Event``,
  ``queue.Queue``, ``Semaphore``) are recognised, and any other thread counts as running.
"""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import stat
import struct
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, NamedTuple, Optional, Set, Tuple

from quiesce._core import OutsideFacts, thread_system_calls

if sys.platform.startswith("linux"):
    import fcntl

    # Bytes of a TCP socket's send queue not yet sent (linux/sockios.h).
    _SIOCOUTQNSD: Optional[int] = 0x894B
else:  # pragma: no cover - elsewhere the send queue is not asked
    _SIOCOUTQNSD = None

if TYPE_CHECKING:
    from quiesce._loop import Loop

# --------------------------------------------------------------------------------------------
# Watched descriptors


@dataclass(frozen=True)
class WatchedDescriptor:
    """A file descriptor the loop's selector watches, as the clock sees it."""

    fd: int
    #: ``"TCP listener"``, ``"TCP connection"``, ``"UDP socket"``, ``"Unix listener"``,
    #: ``"Unix connection"``, ``"pipe"`` or ``"file descriptor"``.
    kind: str
    #: ``"read"``, ``"write"`` or ``"read/write"``.
    events: str
    #: Local and peer address, as text (``None`` when there is none).
    local: Optional[str]
    peer: Optional[str]
    #: The peer is this process (or nobody yet: a listener): it does not hold the clock.
    in_process: bool
    #: What watches it: the transport and protocol classes, or the callback.
    owner: str
    #: Bytes written to an in-process TCP connection that the kernel has not sent yet, for a
    #: peer this loop reads: with a small window, loopback delivers them only as the peer reads
    #: and its kernel opens the window, and they then wake the peer's reader.
    in_flight: int = 0

    @property
    def holds_clock(self) -> bool:
        """Whether it holds the virtual clock at real pace: its peer is outside this process,
        or bytes are still on their way to an in-process peer."""
        return not self.in_process or self.in_flight > 0

    def __str__(self) -> str:
        where = self.local or ""
        if self.peer:
            where = f"{where} -> {self.peer}" if where else f"peer {self.peer}"
        if not self.in_process:
            side = "external: holds the clock"
        elif self.in_flight:
            side = f"in-process, {self.in_flight} bytes in flight: holds the clock"
        else:
            side = "in-process, idle"
        address = f" {where}" if where else ""
        return f"fd {self.fd}: {self.kind}{address} ({self.events}; {self.owner}) [{side}]"


@dataclass(frozen=True)
class _SocketFacts:
    """What does not change while a descriptor stays the same open file."""

    kind: str
    family: int
    local: Any
    peer: Any
    listening: bool
    peer_pid: Optional[int]


def _address_text(address: Any) -> Optional[str]:
    if address is None or address in ("", b""):
        return None
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if isinstance(address, bytes):
        return address.decode(errors="replace")
    return str(address)


def _host_port(address: Any) -> Optional[Tuple[str, int]]:
    if not (isinstance(address, tuple) and len(address) >= 2):
        return None
    host = str(address[0])
    if host.startswith("::ffff:"):
        host = host[len("::ffff:") :]
    return host, int(address[1])


_LOOPBACK = ("127.", "::1", "localhost")
_WILDCARD = ("0.0.0.0", "::", "")


def _socket_facts(fd: int) -> Optional[_SocketFacts]:
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return None
    try:
        family, kind = sock.family, sock.type
        try:
            local: Any = sock.getsockname()
        except OSError:
            local = None
        try:
            peer: Any = sock.getpeername()
        except OSError:
            peer = None
        try:
            listening = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        except OSError:
            listening = False
        peer_pid = None
        if family == getattr(socket, "AF_UNIX", None) and hasattr(socket, "SO_PEERCRED"):
            try:
                creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
                peer_pid = struct.unpack("3i", creds)[0] or None
            except OSError:
                pass
    finally:
        sock.detach()
    unix = family == getattr(socket, "AF_UNIX", None)
    if kind == socket.SOCK_DGRAM:
        name = "Unix datagram socket" if unix else "UDP socket"
    elif listening:
        name = "Unix listener" if unix else "TCP listener"
    else:
        name = "Unix connection" if unix else "TCP connection"
    return _SocketFacts(name, family, local, peer, listening, peer_pid)


def _pipe_has_other_end_here(fd: int, inode: int) -> bool:
    """Whether this process holds another descriptor of the pipe ``fd`` is one end of, open in
    the other direction (Linux: ``/proc/self/fd``); False where that cannot be told."""
    try:
        mode = _access_mode(fd)
        for name in os.listdir("/proc/self/fd"):
            other = int(name)
            if other == fd:
                continue
            try:
                if os.readlink(f"/proc/self/fd/{other}") != f"pipe:[{inode}]":
                    continue
            except OSError:
                continue
            if _access_mode(other) != mode:
                return True
    except (OSError, ValueError):
        return False
    return False


def _access_mode(fd: int) -> int:
    with open(f"/proc/self/fdinfo/{fd}") as info:
        for line in info:
            if line.startswith("flags:"):
                return int(line.split()[1], 8) & os.O_ACCMODE
    raise ValueError(fd)


def _owner_of(loop: Loop, handles: Iterable[Any]) -> str:
    for handle in handles:
        if handle is None or handle.cancelled():
            continue
        callback = getattr(handle, "_callback", None)
        owner = getattr(callback, "__self__", None)
        if owner is loop:
            args = getattr(handle, "_args", None) or ()
            servers = [arg for arg in args if isinstance(arg, asyncio.AbstractServer)]
            if servers or getattr(callback, "__name__", "") == "_accept_connection":
                factory = args[0] if args else None
                made = getattr(factory, "__qualname__", None) or type(factory).__name__
                return f"server accepting connections for {made}"
        if owner is not None and owner is not loop:
            protocol = getattr(owner, "_protocol", None)
            if protocol is not None:
                return f"{type(owner).__name__}, {type(protocol).__name__}"
            return type(owner).__name__
        name = getattr(callback, "__qualname__", None)
        if name:
            return name
    return "registered"


def watched_descriptors(loop: Loop) -> List[WatchedDescriptor]:
    """Every descriptor the loop's selector watches (but its own wake-up socket), classified."""
    selector = getattr(loop, "_selector", None)
    own = getattr(getattr(loop, "_ssock", None), "fileno", lambda: -1)()
    try:
        keys = list(selector.get_map().values()) if selector is not None else []
    except Exception:
        keys = []
    cache: Dict[int, Tuple[Tuple[int, int], Optional[_SocketFacts], bool]] = loop._q_fd_cache

    def described(fd: int) -> Optional[Tuple[Optional[_SocketFacts], bool, int]]:
        try:
            info = os.fstat(fd)
        except OSError:
            return None
        identity = (info.st_dev, info.st_ino)
        cached = cache.get(fd)
        if cached is None or cached[0] != identity:
            facts = _socket_facts(fd) if stat.S_ISSOCK(info.st_mode) else None
            cached = (identity, facts, stat.S_ISFIFO(info.st_mode))
            cache[fd] = cached
        return cached[1], cached[2], info.st_ino

    found: List[Tuple[Any, Optional[_SocketFacts], bool, int]] = []
    for key in keys:
        if key.fd == own:
            continue
        seen = described(key.fd)
        if seen is not None:
            found.append((key, *seen))
    # This loop's transports whose reading is paused are not watched, but are still its own.
    watched = {key.fd for key, _, _, _ in found}
    transports = {
        fd for fd in list(getattr(loop, "_transports", None) or ()) if isinstance(fd, int)
    }
    unwatched: List[Optional[_SocketFacts]] = []
    for fd in transports - watched - {own}:
        seen = described(fd)
        if seen is not None:
            unwatched.append(seen[0])
    for stale in set(cache) - watched - transports:
        del cache[stale]

    # The addresses of this loop's own sockets: a connection to one of them is in-process.
    ours: Set[Tuple[str, int]] = set()
    wildcard_ports: Set[int] = set()
    for facts in [facts for _key, facts, _pipe, _inode in found] + unwatched:
        address = _host_port(facts.local) if facts is not None else None
        if address is None:
            continue
        ours.add(address)
        if facts is not None and facts.listening and address[0] in _WILDCARD:
            wildcard_ports.add(address[1])

    # Local addresses of this loop's sockets that it reads: bytes on their way there will wake it.
    reading: Set[Tuple[str, int]] = set()
    for key, facts, _pipe, _inode in found:
        reader = key.data[0] if isinstance(key.data, tuple) else None
        address = _host_port(facts.local) if facts is not None else None
        if address is not None and reader is not None and not reader.cancelled():
            reading.add(address)

    out = []
    for key, facts, is_pipe, inode in found:
        reader, writer = key.data if isinstance(key.data, tuple) else (None, None)
        events = [
            kind
            for kind, handle in (("read", reader), ("write", writer))
            if handle is not None and not handle.cancelled()
        ]
        owner = _owner_of(loop, (reader, writer))
        in_flight = 0
        if facts is not None:
            in_process = _socket_in_process(facts, ours, wildcard_ports)
            kind, local, peer = facts.kind, _address_text(facts.local), _address_text(facts.peer)
            if in_process and kind == "TCP connection" and _host_port(facts.peer) in reading:
                in_flight = _unsent_bytes(key.fd)
        elif is_pipe:
            in_process = _pipe_has_other_end_here(key.fd, inode)
            kind, local, peer = "pipe", None, None
        else:
            in_process, kind, local, peer = False, "file descriptor", None, None
        out.append(
            WatchedDescriptor(
                fd=key.fd,
                kind=kind,
                events="/".join(events) or "registered",
                local=local,
                peer=peer,
                in_process=in_process,
                owner=owner,
                in_flight=in_flight,
            )
        )
    return out


def _unsent_bytes(fd: int) -> int:
    """Bytes in a TCP socket's send queue that the kernel has not sent yet (SIOCOUTQNSD; sent
    but unacknowledged bytes are already in the loopback peer's receive queue); 0 where that
    cannot be asked."""
    if _SIOCOUTQNSD is None:
        return 0
    try:
        answer = fcntl.ioctl(fd, _SIOCOUTQNSD, b"\0\0\0\0")
    except (OSError, ValueError):
        return 0
    return max(0, int(struct.unpack("i", answer)[0]))


def _socket_in_process(
    facts: _SocketFacts, ours: Set[Tuple[str, int]], wildcard_ports: Set[int]
) -> bool:
    if facts.listening:
        return True
    if facts.peer_pid is not None:
        return facts.peer_pid == os.getpid()
    if facts.peer in (None, "", b""):
        # An unconnected datagram socket waits for whoever sends, as a listener does; a stream
        # socket without a peer is still connecting, maybe to another host.
        return facts.kind.endswith("datagram socket") or facts.kind == "UDP socket"
    peer = _host_port(facts.peer)
    if peer is None:
        return False
    if peer in ours:
        return True
    local = _host_port(facts.local)
    same_host = peer[0].startswith(_LOOPBACK) or (local is not None and peer[0] == local[0])
    return peer[1] in wildcard_ports and same_host


# --------------------------------------------------------------------------------------------
# Threads

#: Thread states, and whether the state holds the virtual clock.
RUNNING = "running"
TIMED_WAIT = "in a timed wait"
PARKED = "parked"
WAITING = "waiting on outside I/O"


@dataclass(frozen=True)
class ThreadState:
    """Another live thread, as the clock sees it."""

    name: str
    #: ``"running"``, ``"in a timed wait"``, ``"parked"`` or ``"waiting on outside I/O"``.
    state: str
    #: Where it is (``file:line in function``), if Python frames tell.
    where: str = ""
    #: Marked with ``quiesce.background(thread)``: never counts.
    background: bool = False

    @property
    def holds_clock(self) -> bool:
        """Whether it holds the virtual clock at real pace (it may call back on its own)."""
        return self.state in (RUNNING, TIMED_WAIT) and not self.background

    def __str__(self) -> str:
        where = f" at {self.where}" if self.where else ""
        if self.background:
            effect = "background: never counts"
        elif self.holds_clock:
            effect = "holds the clock"
        else:
            effect = "does not hold the clock"
        return f"{self.name!r} {self.state}{where} [{effect}]"


class _SyscallTable(NamedTuple):
    """System call numbers (Linux) of the blocking waits that matter, on one machine. The
    waits with a timeout map to the argument that holds it (None: a pointer, NULL forever)."""

    futex: int
    read: Tuple[int, ...]  # read, readv, recvfrom, recvmsg
    accept: Tuple[int, ...]
    signal: Tuple[int, ...]  # pause, rt_sigsuspend, rt_sigtimedwait
    poll: Dict[int, Optional[int]]  # poll: milliseconds in arg 2; ppoll: timespec pointer
    select: Dict[int, Optional[int]]  # select / pselect6: timeval/timespec pointer in arg 4
    epoll: Dict[int, Optional[int]]  # epoll_wait / epoll_pwait: ms in arg 3; pwait2: pointer


_SYSCALLS = {
    "x86_64": _SyscallTable(
        futex=202,
        read=(0, 19, 45, 47),
        accept=(43, 288),
        signal=(34, 130, 128),
        poll={7: 2, 271: None},
        select={23: 4, 270: 4},
        epoll={232: 3, 281: 3, 441: None},
    ),
    "aarch64": _SyscallTable(
        futex=98,
        read=(63, 65, 207, 212),
        accept=(202, 242),
        signal=(133, 137),
        poll={73: None},
        select={72: 4},
        epoll={22: 3, 441: None},
    ),
}
_FUTEX_WAITS = {0, 9}  # FUTEX_WAIT, FUTEX_WAIT_BITSET
_FUTEX_PRIVATE = 128
_MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}.get(
    platform.machine().lower(), platform.machine()
)


def _state_from_syscall(
    line: str, machine: str = _MACHINE, word: Optional[int] = None
) -> Optional[str]:
    """A thread's state from its ``/proc/self/task/<tid>/syscall`` line (and ``word``, the
    current value at its first argument's address, if known); None if it cannot be told
    (unknown machine or format)."""
    table = _SYSCALLS.get(machine)
    fields = line.split()
    if table is None or not fields:
        return None
    if fields[0] == "running" or fields[0] == "-1":
        return RUNNING
    try:
        number = int(fields[0])
        args = [int(field, 16) for field in fields[1:7]]
    except ValueError:
        return None
    if len(args) < 6:
        return None
    if number == table.futex:
        op = args[1]
        if op & 0x7F not in _FUTEX_WAITS:
            return RUNNING
        if word is not None and word != args[2] & 0xFFFFFFFF:
            # The word it sleeps on has changed since: it has been woken, and is on its way.
            return RUNNING
        if args[3] != 0:
            return TIMED_WAIT
        # A private futex is a lock of this process; a shared one may be woken by another.
        return PARKED if op & _FUTEX_PRIVATE else WAITING
    if number in table.read:
        return WAITING if _is_pipe_or_socket(args[0]) else RUNNING
    if number in table.accept or number in table.signal:
        return WAITING
    for group, waits in (("poll", table.poll), ("select", table.select), ("epoll", table.epoll)):
        if number in waits:
            index = waits[number]
            if index is None:
                return WAITING if args[2 if group == "poll" else 3] == 0 else TIMED_WAIT
            value = args[index]
            if group == "select":
                return WAITING if value == 0 else TIMED_WAIT
            # A millisecond timeout, as a C int: -1 (any negative) is forever.
            timeout = value - (1 << 32) if value & (1 << 31) and value < (1 << 32) else value
            if value >= (1 << 63):
                timeout = value - (1 << 64)
            return WAITING if timeout < 0 else TIMED_WAIT
    return RUNNING


def _is_pipe_or_socket(fd: int) -> bool:
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return False
    return target.startswith(("pipe:", "socket:", "/dev/pts", "/dev/tty"))


_STDLIB_WAITS = {
    (threading.__file__, "wait"),
    (threading.__file__, "acquire"),
    (threading.__file__, "join"),
    (threading.__file__, "_wait_for_tstate_lock"),
}


def _state_from_frame(frame: Any) -> str:
    """Without ``/proc``: a thread whose innermost Python frame is a ``threading`` wait with no
    timeout is parked; anything else may be running."""
    if frame is not None and (frame.f_code.co_filename, frame.f_code.co_name) in _STDLIB_WAITS:
        timeout = frame.f_locals.get("timeout")
        if timeout is None or (isinstance(timeout, (int, float)) and timeout < 0):
            return PARKED
        return TIMED_WAIT
    return RUNNING


_WAIT_MODULES = (threading.__file__, getattr(sys.modules.get("queue"), "__file__", None) or "")


def _where(frame: Any) -> str:
    """``file:line in function`` of the innermost frame outside ``threading`` and ``queue``,
    with the stdlib wait it is in."""
    inner = frame
    while frame is not None and frame.f_code.co_filename in _WAIT_MODULES:
        frame = frame.f_back
    if frame is None:
        frame = inner
    if frame is None:
        return ""
    code = frame.f_code
    text = f"{os.path.basename(code.co_filename)}:{frame.f_lineno} in {code.co_name}"
    if inner is not frame and inner is not None:
        module = os.path.splitext(os.path.basename(inner.f_code.co_filename))[0]
        text += f" ({module}.{getattr(inner.f_code, 'co_qualname', inner.f_code.co_name)})"
    return text


def thread_states(loop: Loop) -> List[ThreadState]:
    """The other live threads that could still call back into the loop, with their state; idle
    workers of executors this loop used (no job in flight) are left out."""
    idle_workers: Set[threading.Thread] = set()
    if loop._q_executor_jobs(0) == 0:
        for executor in list(loop._q_executors):
            idle_workers.update(getattr(executor, "_threads", ()))
    current = threading.current_thread()
    others = [
        thread
        for thread in threading.enumerate()
        if thread is not current and thread not in idle_workers and thread.is_alive()
    ]
    if not others:
        return []
    frames = sys._current_frames()
    # Read natively, with the GIL held (see thread_system_calls).
    calls = thread_system_calls([getattr(thread, "native_id", None) or 0 for thread in others])
    states = []
    for thread, (call, word) in zip(others, calls):
        frame = frames.get(thread.ident) if thread.ident is not None else None
        state = (call and _state_from_syscall(call, word=word)) or _state_from_frame(frame)
        states.append(
            ThreadState(
                name=thread.name,
                state=state,
                where=_where(frame),
                background=thread in loop._q_background_threads,
            )
        )
    return states


# --------------------------------------------------------------------------------------------
# The facts the core's decision takes


def outside_facts(loop: Loop) -> OutsideFacts:
    """What :func:`watched_descriptors` and :func:`thread_states` find, counted for the core
    (executor jobs and child processes it counts itself)."""
    descriptors = watched_descriptors(loop)
    threads = [thread for thread in thread_states(loop) if not thread.background]
    signals = len(getattr(loop, "_signal_handlers", None) or {})
    background = any(not task.done() for task in list(loop._q_background))
    return OutsideFacts(
        running_threads=sum(thread.holds_clock for thread in threads),
        waiting_threads=sum(thread.state == WAITING for thread in threads),
        parked_threads=sum(thread.state == PARKED for thread in threads),
        external_io=sum(d.holds_clock for d in descriptors) + signals,
        idle_internal=sum(not d.holds_clock for d in descriptors),
        background=background,
        next_foreground=loop._q_next_foreground_deadline() if background else None,
    )
