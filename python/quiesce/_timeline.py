"""The timeline of one run: which task or callback ran at each step, at what virtual time and
after which scheduling decision, who woke whom, and where the run left stock asyncio order.

:class:`TimelineRecorder` is filled while a replay runs (the loop calls it before each
callback, and the loop's ``call_soon`` / ``call_later`` / ``call_at`` are wrapped on the
instance, so that each callback knows which step scheduled it). It writes the run as a Chrome
Trace Event file (JSON, which Perfetto and ``chrome://tracing`` open) or as a self-contained
HTML page that draws the same timeline with no network and no other tool.

The horizontal axis is the step: one slice per callback, in the order they ran (virtual time
often stands still for hundreds of steps, and may jump by hours). The virtual time, the
decision that chose the step and what else could have run are in each slice's details.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

#: Steps a timeline keeps (a livelock runs millions; the first ones tell the story).
STEP_LIMIT = 20_000

#: Microseconds of trace time per step: slices wide enough to see and to click.
STEP_WIDTH_US = 10

#: Other runnable work named for a step that left stock order.
ALTERNATIVES_SHOWN = 6


@dataclass
class Step:
    """One callback the loop ran."""

    #: Position in the run (0-based).
    index: int
    #: The track it belongs to: a task (its name and coroutine), "callbacks" or "timers".
    track: str
    #: What ran.
    label: str
    #: Virtual time when it ran.
    time: float
    #: Scheduling decisions made before it ran.
    decisions_before: int
    #: The step that scheduled it (None: from outside the loop, or before recording began).
    woken_by: Optional[int]
    #: Other runnable work when it ran, if the decision that chose it left stock order.
    alternatives: List[str] = field(default_factory=list)


@dataclass
class Timeline:
    """A recorded run: its steps and its decisions, ``(kind, options, chosen, time)``."""

    title: str
    steps: List[Step]
    decisions: List[Tuple[str, int, int, float]]
    schedule: str
    #: How the run ended: "passed", or the error it raised.
    outcome: str = "passed"

    def deviating_decisions(self, step: Step) -> List[Tuple[int, Tuple[str, int, int, float]]]:
        """The decisions made just before ``step`` (since the previous step) that chose other
        than stock order, with their indices."""
        previous = self.steps[step.index - 1].decisions_before if step.index else 0
        return [
            (index, self.decisions[index])
            for index in range(previous, min(step.decisions_before, len(self.decisions)))
            if self.decisions[index][2] != 0
        ]


def callback_and_task(entry: Any) -> Tuple[Any, Optional[Any]]:
    """What a ready-queue entry calls, and the task whose step (or wake-up) it is, if any."""
    callback = getattr(entry, "_callback", entry)
    owner = getattr(callback, "__self__", None)
    is_task = isinstance(owner, asyncio.Future) and hasattr(owner, "get_coro")
    return callback, owner if is_task else None


def coroutine_name(task: Any) -> str:
    """The qualified name of ``task``'s coroutine."""
    coro = task.get_coro()
    return getattr(coro, "__qualname__", type(coro).__name__)


def _track_and_label(entry: Any) -> Tuple[str, str]:
    callback, task = callback_and_task(entry)
    what = getattr(callback, "__qualname__", getattr(callback, "__name__", type(callback).__name__))
    if task is not None:
        name = coroutine_name(task).replace(".<locals>", "")
        return f"{task.get_name()} {name}", f"{name} step"
    if hasattr(entry, "when"):
        return "timers", what
    return "callbacks", what


class TimelineRecorder:
    """Records the steps of one run on ``loop`` (see :meth:`install`)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.steps: List[Step] = []
        self._scheduled_by: Dict[int, int] = {}
        self._current: Optional[int] = None
        self._loop: Any = None
        self._deviations = 0

    def install(self, loop: Any) -> None:
        """Wraps ``loop``'s scheduling methods (on the instance: asyncio's C tasks and futures
        look them up by name) so that each callback records the step that scheduled it."""
        self._loop = loop
        for name in ("call_soon", "call_later", "call_at"):
            setattr(loop, name, self._wrap(getattr(loop, name)))

    def _wrap(self, schedule: Callable[..., Any]) -> Callable[..., Any]:
        def scheduled(*args: Any, **kwargs: Any) -> Any:
            handle = schedule(*args, **kwargs)
            if self._current is not None:
                self._scheduled_by[id(handle)] = self._current
            return handle

        return scheduled

    def entry(self, entry: Any) -> bool:
        """The loop is about to run ``entry``; False once the timeline is full."""
        if len(self.steps) >= STEP_LIMIT:
            return False
        loop = self._loop
        decisions, _, deviations = loop._q_decision_counts()
        track, label = _track_and_label(entry)
        step = Step(
            index=len(self.steps),
            track=track,
            label=label,
            time=loop.time(),
            decisions_before=decisions,
            woken_by=self._scheduled_by.pop(id(entry), None),
        )
        if deviations > self._deviations:
            step.alternatives = [
                " ".join(_track_and_label(other)) for other in loop._q_ready_handles()
            ][:ALTERNATIVES_SHOWN]
        self._deviations = deviations
        self.steps.append(step)
        self._current = step.index
        return True

    def finish(self, loop: Any, outcome: str) -> Timeline:
        """The recorded timeline, with the run's decisions (up to its last step) and how it
        ended."""
        needed = self.steps[-1].decisions_before + 1 if self.steps else 0
        return Timeline(
            title=self.title,
            steps=self.steps,
            decisions=loop._q_decisions(needed),
            schedule=loop.schedule,
            outcome=outcome,
        )


# -- Chrome Trace Event format -------------------------------------------------------------------


def chrome_trace(timeline: Timeline) -> Dict[str, Any]:
    """The timeline as a Chrome Trace Event document (JSON object format): a thread per track,
    a complete event (``"X"``) per step, a flow (``"s"``/``"f"``) per wake-up, a counter of the
    virtual time, and instant events marking the steps that left stock order."""
    tracks: Dict[str, int] = {}
    for step in timeline.steps:
        tracks.setdefault(step.track, len(tracks) + 1)
    events: List[Dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": timeline.title}},
    ]
    for name, tid in tracks.items():
        events.append(
            {"name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": {"name": name}}
        )
        events.append(
            {
                "name": "thread_sort_index",
                "ph": "M",
                "pid": 1,
                "tid": tid,
                "args": {"sort_index": tid},
            }
        )
    flow = 0
    last_time: Optional[float] = None
    for step in timeline.steps:
        ts = step.index * STEP_WIDTH_US
        deviating = timeline.deviating_decisions(step)
        args: Dict[str, Any] = {
            "step": step.index,
            "virtual time": step.time,
            "decisions before": step.decisions_before,
        }
        if deviating:
            args["left stock order"] = [
                f"decision #{index + 1} ({kind}): chose {chosen} of {options} (stock order: 0)"
                for index, (kind, options, chosen, _) in deviating
            ]
            args["could have run instead"] = step.alternatives
        event: Dict[str, Any] = {
            "name": step.label,
            "cat": "deviation" if deviating else "step",
            "ph": "X",
            "ts": ts,
            "dur": STEP_WIDTH_US - 1,
            "pid": 1,
            "tid": tracks[step.track],
            "args": args,
        }
        if deviating:
            event["cname"] = "terrible"  # red in chrome://tracing
            events.append(
                {
                    "name": "left stock order",
                    "cat": "deviation",
                    "ph": "i",
                    "s": "t",
                    "ts": ts,
                    "pid": 1,
                    "tid": tracks[step.track],
                    "args": {"decisions": args["left stock order"]},
                }
            )
        events.append(event)
        if step.woken_by is not None:
            waker = timeline.steps[step.woken_by]
            flow += 1
            common = {"name": "wakes", "cat": "wake", "id": flow, "pid": 1}
            events.append(
                {
                    **common,
                    "ph": "s",
                    "ts": waker.index * STEP_WIDTH_US + 1,
                    "tid": tracks[waker.track],
                    "args": {"step": waker.index},
                }
            )
            events.append(
                {
                    **common,
                    "ph": "f",
                    "bp": "e",
                    "ts": ts + 1,
                    "tid": tracks[step.track],
                    "args": {"step": step.index},
                }
            )
        if step.time != last_time:
            events.append(
                {
                    "name": "virtual time",
                    "ph": "C",
                    "ts": ts,
                    "pid": 1,
                    "tid": 0,
                    "args": {"seconds": step.time},
                }
            )
            last_time = step.time
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "title": timeline.title,
            "schedule": timeline.schedule,
            "outcome": timeline.outcome,
            "steps": len(timeline.steps),
            "decisions": len(timeline.decisions),
            "time axis": f"one step every {STEP_WIDTH_US} µs; the virtual time is in each slice",
        },
    }


def write(timeline: Timeline, path: Union[str, os.PathLike[str]]) -> Path:
    """Writes ``timeline`` to ``path``: an HTML page if it ends in ``.html``, else Chrome
    Trace Event JSON. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".html", ".htm"):
        path.write_text(html_page(timeline), encoding="utf-8")
    else:
        path.write_text(json.dumps(chrome_trace(timeline), indent=1) + "\n", encoding="utf-8")
    return path


# -- the self-contained HTML page ---------------------------------------------------------------


def html_page(timeline: Timeline) -> str:
    """A page that draws the timeline (SVG, by a short script in the page): a row per track,
    a box per step, red boxes where the run left stock order, arrows from waker to woken.
    Hovering a box shows its details. Needs no network."""
    data = json.dumps(chrome_trace(timeline)).replace("</", "<\\/")
    title = html.escape(timeline.title)
    return _PAGE.replace("__TITLE__", title).replace("__DATA__", data)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
  body { font: 13px system-ui, sans-serif; margin: 16px; color: #222; }
  h1 { font-size: 16px; margin: 0 0 4px; }
  #meta { color: #555; margin-bottom: 10px; }
  #chart { overflow-x: auto; border: 1px solid #ddd; }
  #details { margin-top: 10px; white-space: pre-wrap; font-family: ui-monospace, monospace; }
  .label { font-size: 12px; fill: #333; }
  .step { fill: #7aa6da; stroke: #3d6da8; stroke-width: 0.5; cursor: pointer; }
  .step.deviation { fill: #e05252; stroke: #8b1e1e; }
  .wake { stroke: #999; stroke-width: 1; fill: none; marker-end: url(#arrow); }
  .row { fill: #f7f7f7; }
  .row.odd { fill: #eef2f7; }
  .axis { font-size: 11px; fill: #666; }
</style>
</head>
<body>
<h1>__TITLE__</h1>
<div id="meta"></div>
<div id="chart"></div>
<div id="details">Hover or click a step for its details.</div>
<script id="trace" type="application/json">__DATA__</script>
<script>
(function () {
  var trace = JSON.parse(document.getElementById("trace").textContent);
  var events = trace.traceEvents, other = trace.otherData;
  var names = {}, steps = [], flows = {};
  events.forEach(function (e) {
    if (e.ph === "M" && e.name === "thread_name") names[e.tid] = e.args.name;
    if (e.ph === "X") steps.push(e);
    if (e.ph === "s" || e.ph === "f") (flows[e.id] = flows[e.id] || {})[e.ph] = e;
  });
  var tids = Object.keys(names).map(Number).sort(function (a, b) { return a - b; });
  var row = 28, left = 280, top = 24;
  var width = Math.max(12, Math.min(48, Math.floor(900 / Math.max(1, steps.length))));
  var tickEvery = width >= 40 ? 1 : width >= 20 ? 5 : 10;
  var svgWidth = left + steps.length * width + 40, svgHeight = top + tids.length * row + 10;
  var ns = "http://www.w3.org/2000/svg";
  function el(name, attrs, parent) {
    var node = document.createElementNS(ns, name);
    for (var key in attrs) node.setAttribute(key, attrs[key]);
    (parent || svg).appendChild(node);
    return node;
  }
  var svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", svgWidth);
  svg.setAttribute("height", svgHeight);
  var defs = el("defs", {});
  var marker = el("marker", {id: "arrow", viewBox: "0 0 6 6", refX: 6, refY: 3,
                             markerWidth: 6, markerHeight: 6, orient: "auto"}, defs);
  el("path", {d: "M0,0 L6,3 L0,6 z", fill: "#999"}, marker);
  var y = {};
  tids.forEach(function (tid, i) {
    y[tid] = top + i * row;
    el("rect", {x: 0, y: y[tid], width: svgWidth, height: row, "class": i % 2 ? "row odd" : "row"});
    var label = el("text", {x: 6, y: y[tid] + row / 2 + 4, "class": "label"});
    label.textContent = names[tid];
  });
  for (var s = 0; s < steps.length; s += tickEvery) {
    var tick = el("text", {x: left + s * width, y: 14, "class": "axis"});
    tick.textContent = tickEvery === 1 ? String(s) : "step " + s;
  }
  var details = document.getElementById("details");
  steps.forEach(function (e) {
    var x = left + e.args.step * width;
    var box = el("rect", {x: x, y: y[e.tid] + 5, width: width - 2, height: row - 10,
                          "class": e.cat === "deviation" ? "step deviation" : "step"});
    var text = e.name + "\\n" + JSON.stringify(e.args, null, 1);
    el("title", {}, box).textContent = text;
    box.addEventListener("mouseover", function () { details.textContent = text; });
    box.addEventListener("click", function () { details.textContent = text; });
  });
  Object.keys(flows).forEach(function (id) {
    var f = flows[id];
    if (!f.s || !f.f) return;
    var x1 = left + f.s.args.step * width + width - 2, y1 = y[f.s.tid] + row / 2;
    var x2 = left + f.f.args.step * width, y2 = y[f.f.tid] + row / 2;
    if (f.s.tid === f.f.tid) return;
    el("path", {d: "M" + x1 + "," + y1 + " C" + (x1 + 20) + "," + y1 + " " + (x2 - 20) + "," +
                   y2 + " " + x2 + "," + y2, "class": "wake"});
  });
  document.getElementById("chart").appendChild(svg);
  var deviations = steps.filter(function (e) { return e.cat === "deviation"; }).length;
  document.getElementById("meta").textContent =
    other.outcome + " | schedule " + other.schedule + " | " + other.steps + " steps, " +
    other.decisions + " decisions, " + deviations + " step(s) after a decision that left " +
    "stock order (red) | arrows: who woke whom";
  document.body.setAttribute("data-rendered-tracks", String(tids.length));
  document.body.setAttribute("data-rendered-steps", String(steps.length));
})();
</script>
</body>
</html>
"""
