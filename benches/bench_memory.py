"""Memory per pending timer and per queued callback: stock asyncio vs uvloop vs quiesce.

Each measurement runs in a fresh subprocess and reads the growth of the resident set (RSS,
Linux ``/proc/self/statm``) while 1,000,000 items are pending, so native allocations (quiesce's
Rust queues, libuv's timers) count as well as Python objects.

Usage::

    python benches/bench_memory.py [--count N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

LOOPS = {
    "asyncio": "asyncio.SelectorEventLoop()",
    "uvloop": "__import__('uvloop').new_event_loop()",
    "quiesce": "__import__('quiesce').Loop()",
}

PROBE = """
import asyncio, gc, sys
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
kind, count = sys.argv[1], int(sys.argv[2])
loop = {factory}
callback = lambda: None
gc.collect()
before = rss()
if kind == "timer":
    handles = [loop.call_later(10.0 + i * 1e-6, callback) for i in range(count)]
else:
    handles = [loop.call_soon(callback) for i in range(count)]
del handles  # only the loop holds them now
gc.collect()
print((rss() - before) / count)
for handle in list(getattr(loop, "_scheduled", ())):
    handle.cancel()
"""


def measure(loop_name: str, kind: str, count: int) -> float | None:
    """Bytes per pending item, or None if the loop cannot be imported."""
    code = PROBE.format(factory=LOOPS[loop_name])
    result = subprocess.run(
        [sys.executable, "-c", code, kind, str(count)], capture_output=True, text=True
    )
    if result.returncode != 0:
        return None
    return float(result.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    """Prints a Markdown table of bytes per pending timer and per queued callback."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    print(f"Python {sys.version.split()[0]}, {args.count:,} items pending\n")
    print("| loop | bytes per pending timer | bytes per queued call_soon |")
    print("| --- | ---: | ---: |")
    for name in LOOPS:
        timer = measure(name, "timer", args.count)
        ready = measure(name, "ready", args.count)
        if timer is None or ready is None:
            print(f"| {name} | not importable | |")
            continue
        print(f"| {name} | {timer:.1f} | {ready:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
