"""The records the benchmark table is made of, and the runner that prints it.

A `Case` compares contenders sampled the same way (interleaved, GC paused) against a
reference contender; a `Probe` measures what is not a set of contenders (threads, clocks,
fan-out). Both fill an `Outcome` with `Row`s, judged against a `Target`. `main` runs the
selected ones and prints the table, the notes and the PASS / MISS count.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import time
import tracemalloc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _util import (
    Arm,
    Env,
    Loop,
    Plan,
    arm_of,
    fmt_ns,
    interleave,
    machine_info,
    machine_lines,
    median,
    percentile,
)

import brama

__all__ = [
    "Case",
    "Contender",
    "Outcome",
    "Probe",
    "Row",
    "Target",
    "judge",
    "main",
    "ours",
    "peer",
    "spread",
]

PASS, MISS, NA = "PASS", "MISS", "n/a"

# -- targets and results --


@dataclass(frozen=True)
class Target:
    """PASS when the row's `on` ("ratio" or "value") compares to `limit` with `op`.

    `goal` is where the issue wants to get eventually (reported, not judged); `today` is the
    ratio recorded in the README before this run ("no worse than today"), also reported."""

    on: str
    op: str
    limit: float
    unit: str = ""
    goal: Target | None = None
    today: float | None = None

    def text(self) -> str:
        limit = f"{self.limit:,g}{self.unit}"
        return f"ratio {self.op} {limit}" if self.on == "ratio" else f"{self.op} {limit}"

    def met(self, row: Row) -> bool | None:
        got = row.ratio if self.on == "ratio" else row.value
        if got is None or got != got:
            return None
        if self.op == "≤":
            return got <= self.limit
        if self.op == "<":
            return got < self.limit
        return got >= self.limit


@dataclass
class Row:
    contender: str
    value: float
    unit: str  # "ns" (per call), "B", "/s", "ms", "s", "threads", "count"
    spread: str = ""
    ratio: float | None = None
    target: str = ""
    verdict: str = ""
    samples: list[float] = field(default_factory=list)

    def shown_value(self) -> str:
        v, unit = self.value, self.unit
        if v != v:
            return NA
        if unit == "ns":
            return fmt_ns(v)
        if unit == "B":
            return f"{v:,.0f} B"
        if unit == "/s":
            return f"{v:,.0f}/s"
        if unit in ("ms", "s"):
            return f"{v:.2f} {unit}"
        return f"{v:,.0f}"


def spread(values: Sequence[float], unit: str) -> str:
    """p25 .. p75 of the samples (without the unit for rates and sizes)."""
    if len(values) < 2:
        return ""
    low, high = percentile(values, 25), percentile(values, 75)
    if unit == "ns":
        return f"{fmt_ns(low)} .. {fmt_ns(high)}"
    if unit in ("ms", "s"):
        return f"{low:,.2f} .. {high:,.2f}"
    return f"{low:,.0f} .. {high:,.0f}"


def judge(row: Row, target: Target) -> Row:
    """Give `row` its target and verdict."""
    row.target = target.text()
    met = target.met(row)
    row.verdict = NA if met is None else PASS if met else MISS
    return row


@dataclass
class Outcome:
    key: str
    number: int
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


# -- cases --


@dataclass(frozen=True)
class Contender:
    """One contender of a case: `build(env)` returns its loop (or an `Arm` with hooks).

    Compared contenders get a ratio against `vs` (default: the case's reference) and, when
    `judged`, the case's target; the others are references and context. `scale`: a fraction
    of the case's sample size, for slow contenders."""

    label: str
    build: Callable[[Env], Arm | Loop]
    compared: bool = True
    vs: str | None = None
    scale: float = 1.0
    judged: bool = True


def ours(label: str, build: Callable[[Env], Arm | Loop], *, vs: str | None = None,
         scale: float = 1.0, judged: bool = True) -> Contender:
    """A compared contender (Brama's, or the subject of the case); `judged=False`: a ratio
    without the case's target (a setting the target is not about)."""
    return Contender(label, build, True, vs, scale, judged)


def peer(label: str, build: Callable[[Env], Arm | Loop], *, scale: float = 1.0) -> Contender:
    """A reference or context contender: no ratio, no target."""
    return Contender(label, build, False, None, scale, False)


@dataclass(frozen=True)
class Case:
    """Contenders sampled the same way, interleaved, in one block of the table.

    `measure` is "time" (ns per call, in `threads` threads at once) or "bytes" (bytes still
    allocated per item: tracemalloc after gc). `show` "/s" prints times as rates. `n` and
    `samples` are (full, quick); `samples` caps the samples per contender. `note` is
    formatted with n, samples and threads. `twins` are (row, twin) pairs of contenders doing
    the same work in two settings: the notes give the row's median over its twin's, without
    a verdict (the same work should cost the same, within the noise)."""

    key: str
    title: str
    contenders: tuple[Contender, ...]
    n: tuple[int, int]
    ref: str | None = None
    target: Target | None = None
    measure: str = "time"
    threads: int = 1
    show: str = "ns"
    samples: tuple[int, int] | None = None
    note: str = ""
    twins: tuple[tuple[str, str], ...] = ()

    def run(self, plan: Plan, out: Outcome) -> None:
        env = Env(plan)
        try:
            n = plan.n(*self.n)
            samples = plan.samples
            if self.samples is not None:
                samples = min(samples, plan.n(*self.samples))
            sizes: dict[str, int] = {}
            arms: dict[str, Arm] = {}
            for c in self.contenders:
                env.n = sizes[c.label] = max(1, int(n * c.scale))
                arms[c.label] = arm_of(c.build(env))
            if self.measure == "bytes":
                raw = bytes_per_item(arms, sizes, samples)
            else:
                raw = interleave(arms, sizes, samples, self.threads)
            out.rows = [self._row(c, raw) for c in self.contenders]
            out.notes.append(self.note.format(n=n, samples=samples, threads=self.threads))
            scaled = [f"{c.label}: {sizes[c.label]:,}" for c in self.contenders if c.scale != 1]
            if scaled:
                out.notes.append("Smaller samples for the slow contenders: " + "; ".join(scaled))
            counted = [label for label, arm in arms.items() if arm.count is not None]
            if counted:
                out.notes.append(
                    f"Counted after every sample, exact each time: {'; '.join(counted)}"
                    " (the counter grew by exactly the number of calls).")
            out.notes.extend(env.reports())
            for label, twin in self.twins:
                ratio = median(raw[label]) / median(raw[twin])
                out.notes.append(f"{label}: {ratio:.2f} x {twin} (medians of this run).")
            out.notes.extend(self._beyond_target(out.rows))
        finally:
            env.close()

    def _row(self, c: Contender, raw: dict[str, list[float]]) -> Row:
        unit = "B" if self.measure == "bytes" else self.show
        costs = raw[c.label]
        values = [1e9 / v for v in costs] if unit == "/s" else costs
        row = Row(c.label, median(values), unit, spread(values, unit), samples=values)
        ref = c.vs or self.ref
        if c.compared and ref is not None:
            row.ratio = median(costs) / median(raw[ref])
            if self.target is not None and c.judged:
                judge(row, self.target)
        return row

    def _beyond_target(self, rows: list[Row]) -> list[str]:
        """The goal, and the figure recorded before, read on the first judged row."""
        target = self.target
        head = next((r for r in rows if r.verdict in (PASS, MISS)), None)
        if target is None or head is None:
            return []
        lines = []
        if target.today is not None and head.ratio is not None:
            verdict = "no worse" if head.ratio <= target.today else "worse"
            lines.append(f"No worse than today: ratio {target.today:g} recorded in the README;"
                         f" this run, {head.contender}: {head.ratio:.2f} ({verdict}).")
        if target.goal is not None:
            met = target.goal.met(head)
            shown = f"{head.ratio:.2f}" if target.goal.on == "ratio" else head.shown_value()
            lines.append(f"Goal {target.goal.text()}: {head.contender}: {shown}"
                         f" ({'met' if met else 'not yet'}).")
        return lines


@dataclass(frozen=True)
class Probe:
    """A measurement that is not a set of interleaved contenders: `body(out, env, targets)`
    fills the outcome's rows and notes, judging them against `targets`."""

    key: str
    title: str
    body: Callable[[Outcome, Env, Mapping[str, Target]], None]
    targets: Mapping[str, Target] = field(default_factory=dict)

    def run(self, plan: Plan, out: Outcome) -> None:
        env = Env(plan)
        try:
            self.body(out, env, self.targets)
        finally:
            env.close()


def bytes_per_item(arms: dict[str, Arm], sizes: dict[str, int],
                   samples: int) -> dict[str, list[float]]:
    """Round-robin: bytes still allocated (tracemalloc, after gc) per item of `run(n)`, whose
    result is kept alive until measured; `before` / `after` run outside the trace."""
    results: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(samples):
        for name, arm in arms.items():
            n = sizes[name]
            if arm.before is not None:
                arm.before(n)
            try:
                gc.collect()
                tracemalloc.start()
                try:
                    base = tracemalloc.get_traced_memory()[0]
                    kept = arm.run(n)
                    gc.collect()
                    used = tracemalloc.get_traced_memory()[0] - base
                finally:
                    tracemalloc.stop()
                del kept
            finally:
                if arm.after is not None:
                    arm.after(n)
            results[name].append(used / n)
    return results


# -- running and printing --


def _select(cases: Sequence[Case | Probe], only: str | None) -> list[tuple[int, Case | Probe]]:
    numbered = list(enumerate(cases, start=1))
    if not only:
        return numbered
    wanted = [w.strip().lower() for w in only.split(",") if w.strip()]
    chosen = [(i, c) for i, c in numbered
              if any(w == str(i) or c.key.startswith(w) for w in wanted)]
    if not chosen:
        names = ", ".join(f"{i} {c.key}" for i, c in numbered)
        raise SystemExit(f"--only {only!r} matches no case; choose from: {names}")
    return chosen


def _table(outcomes: list[Outcome]) -> list[str]:
    header = ("contender", "median", "p25 .. p75", "ratio", "target", "result")
    width = max([len(r.contender) for o in outcomes for r in o.rows] + [40]) + 3
    fmt = f"{{:<{width}}} {{:>12}}  {{:<23}} {{:>6}}  {{:<20}} {{}}"
    lines = [fmt.format(*header), "-" * (width + 74)]
    for o in outcomes:
        lines.append(f"{o.number}. {o.title}")
        if o.error:
            lines.append(f"   ERROR: {o.error}")
        for r in o.rows:
            ratio = "" if r.ratio is None else f"{r.ratio:.2f}"
            lines.append(fmt.format("   " + r.contender, r.shown_value(), r.spread, ratio,
                                    r.target, r.verdict).rstrip())
    return lines


def main(cases: Sequence[Case | Probe], targets: Mapping[str, Target], description: str,
         argv: list[str] | None = None) -> int:
    """Parse the command line, run the chosen cases, print (and write) the results."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smaller samples (smoke run)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    parser.add_argument("--only", metavar="NAME",
                        help="comma-separated case names or numbers (prefixes work): "
                        + ", ".join(c.key for c in cases))
    parser.add_argument("--samples", type=int, default=None,
                        help="samples per contender (default 9, quick 3)")
    args = parser.parse_args(argv)
    plan = Plan(quick=args.quick, samples=args.samples or (3 if args.quick else 9))
    chosen = _select(cases, args.only)

    info = machine_info()
    for line in machine_lines(info):
        print(line)
    mode = "quick" if plan.quick else "full"
    print(f"mode    : {mode}, {plan.samples} samples per contender, interleaved round-robin;"
          " GC paused in timed loops", flush=True)
    print()

    outcomes: list[Outcome] = []
    started = time.perf_counter()
    for number, case in chosen:
        out = Outcome(case.key, number, case.title)
        t = time.perf_counter()
        print(f"[{number}/{len(cases)}] {case.title} ...", end=" ", file=sys.stderr, flush=True)
        try:
            case.run(plan, out)
        except Exception as exc:  # report it and go on with the next case
            out.error = f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):
                brama.shutdown()
        out.extra["seconds"] = round(time.perf_counter() - t, 2)
        print(f"{out.extra['seconds']:.1f} s", file=sys.stderr, flush=True)
        outcomes.append(out)
    total = time.perf_counter() - started

    print("ratio = the row's cost / its reference's cost in this run (time per call or per"
          " registration, bytes per item); below 1 the row is cheaper")
    print()
    for line in _table(outcomes):
        print(line)
    print()
    for o in outcomes:
        for note in o.notes:
            print(f"[{o.number}] {note}")
    verdicts = [r.verdict for o in outcomes for r in o.rows if r.verdict in (PASS, MISS)]
    errors = [o for o in outcomes if o.error]
    print()
    print(f"targets: {verdicts.count(PASS)} PASS, {verdicts.count(MISS)} MISS"
          f"{f', {len(errors)} case(s) failed' if errors else ''}; total time {total:.1f} s")

    if args.json:
        payload = {
            "machine": info,
            "mode": mode,
            "samples": plan.samples,
            "total_seconds": round(total, 2),
            "targets": {key: asdict(t) for key, t in targets.items()},
            "cases": [asdict(o) for o in outcomes],
        }
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"results written to {args.json}")
    return 1 if errors else 0
