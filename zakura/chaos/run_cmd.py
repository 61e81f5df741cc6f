"""``zakura chaos run FILE``: run a scenario file against a live cluster and give a verdict.

What it does, in order: check the file whole (:mod:`zakura.chaos.scenario`; a bad file is
refused as ``FILE:LINE: reason`` before any node starts, exit 2), print the nemesis seed (so
a failure reruns exactly with ``--seed``), start the :class:`~zakura.chaos.cluster.Cluster`,
wait until its nodes are connected and converged, run the timeline and the nemesis
(:func:`zakura.chaos.nemesis.run_steps`) with live progress, wait for the honest nodes to
converge again, check the scenario's invariants (:func:`zakura.chaos.invariants.check_cluster`)
and print a verdict table. Exit 0 when every invariant held and every timeline step took
effect, 1 otherwise; ``--report`` and ``--junit`` write the same verdict for machines.

SIGINT or SIGTERM cancels the run; the cluster's teardown stops and reaps every node on the
way out (exit 130). Imports of the node and of rich happen in :func:`run`, so ``--help``
stays quick.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zakura.args import count

if TYPE_CHECKING:
    from rich.console import Console

    from zakura.chaos.cluster import Cluster, FaultRecord
    from zakura.chaos.invariants import Check
    from zakura.chaos.nemesis import Outcome, Step
    from zakura.chaos.scenario import Scenario

HELP = """\
Run a chaos scenario: start a cluster of real nodes on 127.0.0.1, break it on the scenario's
timeline (and with its seeded nemesis), then check its invariants and print a verdict table.

The scenario file (TOML) holds [cluster] (nodes, blocks, mine_interval, hostile, seed,
idle_timeout), [[step]] entries (at, fault, target, duration and the fault's arguments), an
optional [nemesis] (seed, kinds, rate, duration) and invariants = [...] (names from
zakura.chaos.invariants). A bad file is refused before anything starts, as FILE:LINE: reason
(exit 2). Exit 0 when every invariant held and every timeline step took effect, 1 otherwise;
Ctrl-C stops every node (exit 130). --console watches the cluster in the fleet console.
"""

EXAMPLE = """\
example:
  zakura chaos run scenarios/partition-heal.toml
  zakura chaos run scenarios/panic-storm.toml --seed 7 --report report.json --junit junit.xml
"""

#: The verdict row for the scenario's own steps (not an invariant of the node: of the run).
STEPS_TOOK_EFFECT = "timeline steps took effect"
#: Seconds the cluster gets to connect into a full mesh after it starts.
CONNECT_TIMEOUT = 30.0


def add_parser(sub: Any, formatter_class: type[argparse.HelpFormatter]) -> None:
    """Add ``chaos`` (and its ``run``) to the ``zakura`` subcommands ``sub``."""
    chaos = sub.add_parser(
        "chaos",
        help="run fault-injection scenarios against a live cluster",
        description=HELP,
        epilog=EXAMPLE,
        formatter_class=formatter_class,
    )
    verbs = chaos.add_subparsers(dest="chaos_command", metavar="{run}", required=True)
    run_p = verbs.add_parser(
        "run",
        help="run one scenario file and print the verdict",
        description=HELP,
        epilog=EXAMPLE,
        formatter_class=formatter_class,
    )
    run_p.add_argument("file", type=Path, metavar="FILE", help="the scenario file (TOML)")
    run_p.add_argument(
        "--seed",
        type=count(0),
        default=None,
        metavar="S",
        help="seed of the nemesis's fault schedule; the same seed gives the same faults at "
        "the same times on the same nodes (default: the file's [nemesis] seed)",
    )
    run_p.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the verdict, the schedule and the fault timeline as JSON (default: no report)",
    )
    run_p.add_argument(
        "--junit",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the verdict as JUnit XML, one test case per invariant (default: none)",
    )
    run_p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="parent of the nodes' data dirs, kept at exit (default: a temp dir, removed "
        "at exit unless an invariant failed)",
    )
    run_p.add_argument(
        "--console",
        action="store_true",
        help="open the fleet console (view 0: every node; Enter opens one) on the cluster while "
        "the scenario runs; progress shows as notifications, and the verdict table is printed "
        "when you quit it (q); quitting before the end stops the run (default: off)",
    )
    run_p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the seed and the schedule (timeline and nemesis merged) and exit without "
        "starting a node (default: off)",
    )


def run(args: argparse.Namespace) -> int:
    """``zakura chaos run``. Raises UsageError for a flag that does not fit the file."""
    import asyncio

    from console.usage import UsageError
    from zakura.args import fail_line
    from zakura.chaos.scenario import ScenarioError, load

    prog = "zakura chaos run"
    try:
        scenario = load(args.file)
    except ScenarioError as exc:
        return fail_line(prog, str(exc))
    if args.seed is not None and scenario.nemesis is None:
        raise UsageError("--seed", f"{args.file} has no [nemesis] to seed")
    if args.console and not args.dry_run:
        from console.launcher import NotATerminal, check_terminal

        try:
            check_terminal()
        except NotATerminal:
            return fail_line(
                prog,
                "--console draws a full-screen UI and needs a terminal on stdin and stdout "
                "(without --console the run prints plain progress lines)",
            )
    return asyncio.run(_main(scenario, args))


async def _main(scenario: Scenario, args: argparse.Namespace) -> int:
    """Run under a task that SIGINT/SIGTERM cancel, so teardown runs and the exit is 130."""
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(_run(scenario, args))
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        print("zakura chaos run: interrupted; every node stopped", flush=True)
        return 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@dataclass(frozen=True, slots=True)
class _Verdict:
    """What a scenario run came to, for the table, the report and the exit status."""

    checks: list[Check]
    outcomes: list[Outcome]
    notes: list[str]
    timeline: list[FaultRecord]

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)


async def _drive(
    cluster: Cluster,
    scenario: Scenario,
    steps: tuple[Step, ...],
    say: Callable[[str, bool], None],
    stage: Callable[[str], None],
) -> _Verdict:
    """The scenario on a started cluster: connect, run the schedule, converge, check.

    ``say`` gets each progress line (and whether it is good news); ``stage`` what is going on
    now. The plain run prints them under a spinner, ``--console`` shows them in the console.
    """
    from zakura.chaos.cluster import ClusterTimeout
    from zakura.chaos.invariants import check_cluster
    from zakura.chaos.nemesis import run_steps
    from zakura.chaos.scenario import INVARIANT_NAMES

    spec = scenario.cluster
    notes: list[str] = []
    outcomes: list[Outcome] = []
    stage("waiting for the nodes to connect and converge ...")
    # Hostile nodes may be dropped by design: wait for the honest mesh.
    await cluster.connected(CONNECT_TIMEOUT, nodes=cluster.honest)
    if scenario.start_when == "converged":
        tip = await cluster.converged(scenario.converge_timeout)
        say(f"cluster of {spec.nodes} converged at {tip}; faults start now", True)
    else:
        say(f"cluster of {spec.nodes} connected; faults start now", True)
    stage("running the timeline ...")

    def progress(o: Outcome) -> None:
        say(o.format(), o.ok)
        stage(f"faults: {len(outcomes) + 1} of {_events(steps)} done; last: {o.step.fault}")

    outcomes += await run_steps(cluster, steps, on_outcome=progress)
    stage("faults done; waiting for the honest nodes to converge ...")
    try:
        tip = await cluster.converged(scenario.converge_timeout)
        notes.append(f"converged at {tip} after the faults")
    except ClusterTimeout as exc:
        notes.append(f"did not converge after the faults: {exc}")
    stage("checking the invariants ...")
    checks = await check_cluster(cluster)
    wanted = {INVARIANT_NAMES[n] for n in scenario.invariants}
    checks = [c for c in checks if c.invariant in wanted]
    checks.append(_steps_check(outcomes))
    return _Verdict(checks, outcomes, notes, list(cluster.timeline))


async def _run(scenario: Scenario, args: argparse.Namespace) -> int:
    import time

    from rich.console import Console
    from rich.markup import escape

    from zakura.chaos.cluster import Cluster, ClusterError, ClusterTimeout
    from zakura.testnet import TestnetError

    console = Console(highlight=False)
    seed = scenario.nemesis_seed(args.seed)
    steps = scenario.schedule(seed)
    console.print(escape(f"scenario {scenario.path}: {scenario.description or '-'}"))
    if seed is not None:
        console.print(f"nemesis seed {seed} (rerun: zakura chaos run {args.file} --seed {seed})")
    console.print(f"{len(steps)} steps:")
    for step in steps:
        console.print(escape(f"  {step.format()}  [{step.origin}]"))
    if args.dry_run:
        return 0
    spec = scenario.cluster
    t0 = time.monotonic()
    cluster = Cluster(**spec.kwargs(), data_dir=args.data_dir)

    def said(line: str, ok: bool) -> None:
        console.print(f"[{'green' if ok else 'yellow'}]{escape(line)}")

    verdict: _Verdict | None
    try:
        if args.console:
            console.print(f"starting {spec.nodes} nodes; the console opens when they are up ...")
            async with cluster:
                verdict = await _watched(cluster, scenario, steps, args)
                if verdict is not None:
                    cluster.keep_data = cluster.keep_data or not verdict.passed
        else:
            with console.status(f"starting {spec.nodes} nodes ...") as status:
                async with cluster:
                    verdict = await _drive(cluster, scenario, steps, said, status.update)
                    cluster.keep_data = cluster.keep_data or not verdict.passed
    except (TestnetError, ClusterError, ClusterTimeout) as exc:
        console.print(f"[red]zakura chaos run: error: {escape(str(exc))}")
        return 1
    if verdict is None:
        console.print(
            "zakura chaos run: the console closed before the scenario ended; every node stopped"
        )
        return 130
    elapsed = time.monotonic() - t0
    for note in verdict.notes:
        console.print(escape(note))
    console.print(_verdict_table(verdict.checks, scenario))
    passed = verdict.passed
    console.print(
        f"{'[green]PASS' if passed else '[red]FAIL'}[/] {scenario.path} in {elapsed:.1f} s"
    )
    if not passed:
        console.print(f"data dirs kept in {cluster.data_dir}")
    elif args.data_dir is not None:
        console.print(f"data dirs in {cluster.data_dir}")
    report = _report(scenario, seed, steps, verdict, elapsed)
    _write_outputs(args, report, elapsed, console)
    return 0 if passed else 1


async def _watched(
    cluster: Cluster, scenario: Scenario, steps: tuple[Step, ...], args: argparse.Namespace
) -> _Verdict | None:
    """``--console``: the scenario beside the fleet console; None if the console closed first.
    The progress lines are printed once the console is gone."""
    from rich.console import Console
    from rich.markup import escape

    from console.launcher import default_theme
    from zakura.chaos.watch import ScenarioWatch

    watch = ScenarioWatch(
        cluster, theme=default_theme(None, os.environ), ascii=False, refresh_interval=1.0
    )

    def say(line: str, ok: bool) -> None:
        watch.follow()
        watch.say(line, ok=ok)

    def stage(text: str) -> None:
        watch.stage(f"{Path(scenario.path).name}: {text}")

    async def scenario_run() -> _Verdict:
        verdict = await _drive(cluster, scenario, steps, say, stage)
        word = "PASS" if verdict.passed else "FAIL"
        watch.stage(f"{Path(scenario.path).name}: {word}; q quits and prints the verdict")
        watch.say(f"scenario finished: {word}", ok=verdict.passed)
        return verdict

    try:
        return await watch.run(scenario_run)
    finally:
        console = Console(highlight=False)
        for line in watch.lines:
            console.print(escape(line))


def _events(steps: tuple[Step, ...]) -> int:
    from zakura.chaos.nemesis import TIMED_FAULTS

    return sum(2 if s.duration is not None and s.fault in TIMED_FAULTS else 1 for s in steps)


def _steps_check(outcomes: list[Outcome]) -> Check:
    """The scenario's own steps must have happened, or it tested less than it says.

    Nemesis steps may miss (a random fault aimed at a peer that is not connected right now):
    they are counted, not judged.
    """
    from zakura.chaos.invariants import Check, Violation

    mine = [o for o in outcomes if o.step.origin == "timeline"]
    drawn = [o for o in outcomes if o.step.origin != "timeline"]
    missed = sum(not o.ok for o in drawn)
    evidence = f"{sum(o.ok for o in mine)} of {len(mine)} timeline actions took effect"
    if drawn:
        evidence += f"; nemesis: {len(drawn) - missed} of {len(drawn)} (misses are not judged)"
    violations = tuple(
        Violation(STEPS_TOOK_EFFECT, _step_node(o.step), f"{o.phase} {o.step.format()}: {o.detail}")
        for o in mine
        if not o.ok
    )
    return Check(STEPS_TOOK_EFFECT, evidence, violations)


def _step_node(step: Step) -> int | None:
    first = step.target[0] if step.target else None
    return first if isinstance(first, int) else None


def _verdict_table(checks: list[Check], scenario: Scenario) -> Any:
    from rich.markup import escape
    from rich.table import Table

    from zakura.chaos.scenario import INVARIANT_NAMES

    names = {v: k for k, v in INVARIANT_NAMES.items()}
    table = Table(title=f"verdict: {scenario.path}", show_lines=False)
    for column in ("invariant", "node", "evidence", "verdict"):
        table.add_column(column, overflow="fold")
    for check in checks:
        name = names.get(check.invariant, check.invariant)
        if check.ok:
            table.add_row(escape(name), "all", escape(check.evidence), "[green]PASS")
        for v in check.violations:
            node = "cluster" if v.node is None else str(v.node)
            table.add_row(escape(name), node, escape(v.evidence), "[red]FAIL")
    return table


def _jsonable(value: object) -> object:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def _report(
    scenario: Scenario,
    seed: int | None,
    steps: tuple[Step, ...],
    verdict: _Verdict,
    elapsed: float,
) -> dict[str, Any]:
    """The verdict as a JSON document: what ran, what was done, what held."""
    from zakura.chaos.scenario import INVARIANT_NAMES

    names = {v: k for k, v in INVARIANT_NAMES.items()}
    return {
        "scenario": scenario.path,
        "description": scenario.description,
        "passed": verdict.passed,
        "seed": seed,
        "duration_s": round(elapsed, 3),
        "cluster": scenario.cluster.kwargs(),
        "notes": verdict.notes,
        "steps": [
            {
                "at": s.at,
                "fault": s.fault,
                "target": _jsonable(s.target),
                "args": {k: _jsonable(v) for k, v in s.args},
                "duration": s.duration,
                "origin": s.origin,
            }
            for s in steps
        ],
        "outcomes": [
            {
                "fault": o.step.fault,
                "at": o.step.at,
                "phase": o.phase,
                "elapsed": o.elapsed,
                "ok": o.ok,
                "detail": o.detail,
            }
            for o in verdict.outcomes
        ],
        "invariants": [
            {
                "name": names.get(c.invariant, c.invariant),
                "invariant": c.invariant,
                "ok": c.ok,
                "evidence": c.evidence,
                "violations": [
                    {"node": _jsonable(v.node), "evidence": v.evidence} for v in c.violations
                ],
            }
            for c in verdict.checks
        ],
        "timeline": [
            {
                "at": r.at,
                "elapsed": r.elapsed,
                "node": r.node,
                "fault": r.fault,
                "args": {k: _jsonable(v) for k, v in r.args.items()},
                "ok": r.ok,
                "result": r.result,
            }
            for r in verdict.timeline
        ],
    }


def _junit(report: dict[str, Any], elapsed: float) -> bytes:
    """One ``testsuite`` for the scenario, one ``testcase`` per invariant, a ``failure``
    listing each violation: what CI systems show as test results."""
    import xml.etree.ElementTree as ET

    rows = report["invariants"]
    suite = ET.Element(
        "testsuite",
        name=str(report["scenario"]),
        tests=str(len(rows)),
        failures=str(sum(not r["ok"] for r in rows)),
        errors="0",
        time=f"{elapsed:.3f}",
    )
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="seed", value=str(report["seed"]))
    for row in rows:
        case = ET.SubElement(
            suite, "testcase", classname=str(report["scenario"]), name=str(row["name"])
        )
        ET.SubElement(case, "system-out").text = str(row["evidence"])
        if not row["ok"]:
            failure = ET.SubElement(case, "failure", message=str(row["invariant"]))
            failure.text = "\n".join(
                f"node {v['node']}: {v['evidence']}" for v in row["violations"]
            )
    data: bytes = ET.tostring(suite, encoding="utf-8", xml_declaration=True)
    return data


def _write_outputs(
    args: argparse.Namespace,
    report: dict[str, Any],
    elapsed: float,
    console: Console,
) -> None:
    import json

    if args.report is not None:
        args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        console.print(f"report: {args.report}")
    if args.junit is not None:
        args.junit.write_bytes(_junit(report, elapsed))
        console.print(f"junit: {args.junit}")
