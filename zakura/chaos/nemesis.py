"""A seeded random fault schedule (the nemesis), and a runner that carries out a schedule.

Two halves, kept apart on purpose:

- :func:`schedule` is a pure function (no I/O, no clock): the same seed, duration, kinds, rate
  and nodes give the same :class:`Step` tuple, times and targets included. That is what makes
  a failed chaos run rerun exactly: print the seed, pass it back.
- :func:`run_steps` applies steps (from the nemesis or from a scenario's timeline) to a live
  :class:`~zakura.chaos.cluster.Cluster` at their times, and undoes each timed fault after its
  ``duration`` (heal a partition or a link fault, resume a paused node, restart a killed one,
  unpark, lift a throttle). A fault the cluster refuses (a peer not connected right now, a node
  that is down) is reported as an :class:`Outcome`, not raised: the cluster's own timeline has
  it too, and a random schedule is bound to aim at something that is not there.

The nemesis never overlaps two faults on one node (a node is busy from a fault's start to its
end), a partition waits until no node is busy, and every timed fault ends within the run's
``duration``, so the cluster is whole again when the schedule is done.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from node_core.control import PANIC_SERVICES, STALL_SERVICES, Refusal

if TYPE_CHECKING:
    from zakura.chaos.cluster import Cluster

__all__ = [
    "DEFAULT_KINDS",
    "FAULTS",
    "NODE_FAULTS",
    "PEER_FAULTS",
    "TIMED_FAULTS",
    "Outcome",
    "Step",
    "run_steps",
    "schedule",
]

#: Faults aimed at one node's connection to a peer (``args`` carry ``peer``).
PEER_FAULTS = ("disconnect", "panic", "park", "unpark", "stall", "throttle")
#: Faults on a node's links to other nodes (``partition`` takes groups as its target).
LINK_FAULTS = ("partition", "delay", "bandwidth", "heal")
#: Faults on a node's process.
PROCESS_FAULTS = ("kill", "restart", "pause", "resume")
#: Every fault a :class:`Step` may name: the :class:`Cluster` method of the same name.
FAULTS = PEER_FAULTS + LINK_FAULTS + PROCESS_FAULTS
#: Faults that act on nodes one by one (every fault but ``partition``).
NODE_FAULTS = tuple(f for f in FAULTS if f != "partition")
#: Faults a ``duration`` undoes, and the fault that undoes each.
TIMED_FAULTS: Mapping[str, str] = {
    "park": "unpark",
    "throttle": "throttle",  # throttle 0 lifts it
    "partition": "heal",
    "delay": "heal",
    "bandwidth": "heal",
    "kill": "restart",
    "pause": "resume",
}
#: What the nemesis draws from unless told otherwise: faults that undo themselves or are
#: undone by their duration (no bare ``heal``, ``restart``, ``resume``, ``unpark``).
DEFAULT_KINDS = ("disconnect", "panic", "park", "stall", "throttle", "partition", "delay", "pause")
#: Kinds the nemesis can draw (the undo-only faults have nothing to undo when drawn alone).
NEMESIS_KINDS = tuple(f for f in FAULTS if f not in ("heal", "restart", "resume", "unpark"))

ArgValue = int | float | str | tuple[int, ...]
#: Nodes a step acts on; for ``partition``, the groups.
Target = tuple[int, ...] | tuple[tuple[int, ...], ...]


@dataclass(frozen=True, slots=True)
class Step:
    """One fault at one time.

    Attributes:
        at: Seconds after the run starts.
        fault: One of :data:`FAULTS`.
        target: The nodes it acts on (each in turn); for ``partition`` the groups; empty for a
            ``heal`` of every node.
        args: The fault's other arguments as ``(name, value)`` pairs, sorted (``peer``,
            ``service``, ``seconds``, ``kib_per_s``, ``to``, ``ms``, ``jitter_ms``).
        duration: Seconds until it is undone (:data:`TIMED_FAULTS`); None: never.
        origin: ``nemesis`` or ``timeline`` (a scenario's own step).
    """

    at: float
    fault: str
    target: Target
    args: tuple[tuple[str, ArgValue], ...] = ()
    duration: float | None = None
    origin: str = "nemesis"

    @property
    def kwargs(self) -> dict[str, ArgValue]:
        return dict(self.args)

    @property
    def nodes(self) -> tuple[int, ...]:
        """Every node index the step names (target and ``peer``/``to``)."""
        out: list[int] = []
        for t in self.target:
            out.extend(t if isinstance(t, tuple) else (t,))
        for key in ("peer", "to"):
            value = self.kwargs.get(key)
            if isinstance(value, int):
                out.append(value)
            elif isinstance(value, tuple):
                out.extend(value)
        return tuple(out)

    def format(self) -> str:
        """One line: ``   3.250 s  partition   [[0], [1, 2]]  for 2 s``."""
        if self.fault == "partition":
            target = str([list(g) for g in self.target if isinstance(g, tuple)])
        else:
            target = ",".join(str(t) for t in self.target) or "all"
        parts = [f"{self.at:8.3f} s", f"{self.fault:<10}", target]
        parts += [f"{k}={v}" for k, v in self.args]
        if self.duration is not None:
            parts.append(f"for {self.duration:g} s")
        return "  ".join(parts)


def schedule(
    seed: int,
    duration: float,
    kinds: Sequence[str] = DEFAULT_KINDS,
    rate: float = 0.5,
    nodes: int | Sequence[int] = 3,
    *,
    max_fault: float = 4.0,
) -> tuple[Step, ...]:
    """A random fault schedule over ``duration`` seconds, fully determined by the arguments.

    Faults arrive as a Poisson process of ``rate`` per second (a quieter stretch when every
    eligible node is busy). Each picks its kind from ``kinds``, its nodes from ``nodes`` (a
    count, or the eligible indexes), and its arguments and duration (up to ``max_fault`` s)
    from the same seeded generator.

    Raises:
        ValueError: An unknown or undrawable kind, a rate or duration not positive, fewer
            than two nodes.
    """
    for kind in kinds:
        if kind not in NEMESIS_KINDS:
            raise ValueError(f"nemesis kind {kind!r}: expected one of {', '.join(NEMESIS_KINDS)}")
    if not kinds:
        raise ValueError("nemesis kinds: give at least one")
    if not rate > 0 or not duration > 0:
        raise ValueError(f"nemesis rate and duration must be positive (got {rate}, {duration})")
    pool = tuple(range(nodes)) if isinstance(nodes, int) else tuple(nodes)
    if len(pool) < 2:
        raise ValueError(f"the nemesis needs at least two nodes, got {list(pool)}")
    rng = random.Random(seed)
    busy: dict[int, float] = {}
    steps: list[Step] = []
    t = 0.0
    while True:
        t = round(t + rng.expovariate(rate), 3)
        if t >= duration:
            break
        kind = rng.choice(tuple(kinds))
        free = [n for n in pool if busy.get(n, 0.0) <= t]
        span: float | None = None
        if kind in TIMED_FAULTS:
            span = round(min(rng.uniform(0.5, max_fault), duration - t), 3)
            if span < 0.25:
                continue  # too close to the end to undo in time
        step = _draw(rng, t, kind, free, pool, span)
        if step is None:
            continue
        end = t + (span or 0.0) + (_number(step.kwargs.get("seconds", 0.0)))
        for n in step.nodes:
            busy[n] = max(busy.get(n, 0.0), end)
        steps.append(step)
    return tuple(steps)


def _number(value: ArgValue) -> float:
    """A numeric argument (the parser and :func:`_draw` only put numbers there)."""
    if isinstance(value, str | tuple):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def _draw(
    rng: random.Random,
    t: float,
    kind: str,
    free: list[int],
    pool: tuple[int, ...],
    span: float | None,
) -> Step | None:
    """One step of ``kind`` at ``t`` on nodes from ``free``; None when it cannot have any."""
    if kind == "partition":
        if len(free) < len(pool):
            return None
        shuffled = list(pool)
        rng.shuffle(shuffled)
        cut = rng.randint(1, len(shuffled) - 1)
        groups = (tuple(sorted(shuffled[:cut])), tuple(sorted(shuffled[cut:])))
        return Step(t, kind, tuple(sorted(groups)), (), span)
    if kind in ("kill", "pause"):
        if not free:
            return None
        return Step(t, kind, (rng.choice(free),), (), span)
    if len(free) < 2:
        return None
    node, other = rng.sample(free, 2)
    args: dict[str, ArgValue] = {}
    if kind in PEER_FAULTS:
        args["peer"] = other
    if kind == "panic":
        args["service"] = rng.choice(PANIC_SERVICES)
    elif kind == "stall":
        args["service"] = rng.choice(STALL_SERVICES)
        args["seconds"] = float(rng.randint(1, 3))
    elif kind in ("throttle", "bandwidth"):
        args["kib_per_s"] = float(rng.choice((16, 32, 64, 128)))
    elif kind == "delay":
        args["ms"] = float(rng.choice((50, 100, 200, 400)))
        args["jitter_ms"] = float(rng.choice((0, 10, 50)))
    if kind in ("delay", "bandwidth"):
        args["to"] = (other,)
    return Step(t, kind, (node,), tuple(sorted(args.items())), span)


# ---------------------------------------------------------------------- the runner
@dataclass(frozen=True, slots=True)
class Outcome:
    """What came of one step (``phase`` ``apply``) or of undoing it (``phase`` ``undo``)."""

    step: Step
    phase: str
    #: Seconds after the run started when it was done.
    elapsed: float
    ok: bool
    detail: str

    def format(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        what = self.step.fault if self.phase == "apply" else f"undo {self.step.fault}"
        return f"{self.elapsed:8.2f} s  {what:<16} {verdict}: {self.detail}"


#: Seconds a peer fault waits for its peer to be connected before it is sent anyway.
PEER_WAIT = 15.0


async def _peer_connected(cluster: Cluster, node: int, peer: int, timeout: float) -> None:
    """Wait until ``node`` has a connection to ``peer`` (a peer fault needs one): after a
    partition, a kill or a panic the nodes redial, and that takes a moment."""
    label = cluster.label(peer)

    def has_peer(snaps: Mapping[int, Mapping[str, object]]) -> bool:
        peers = snaps[node].get("peers")
        return isinstance(peers, list) and any(p.get("label") == label for p in peers)

    await cluster.wait_for(has_peer, timeout, what=f"node {node} connected to {peer}", nodes=[node])


async def _apply(cluster: Cluster, step: Step, undo: bool) -> str:
    """Carry out ``step`` (or undo it) on ``cluster``; raise when the cluster refuses."""
    from zakura.chaos.cluster import FaultRefused

    kw = step.kwargs
    fault = TIMED_FAULTS[step.fault] if undo else step.fault
    if fault == "partition":
        await cluster.partition([list(g) for g in step.target if isinstance(g, tuple)])
        return "partitioned"
    if fault == "heal" and ((undo and step.fault == "partition") or not step.target):
        await cluster.heal()
        return "healed every node"
    done = []
    for node in step.target:
        assert isinstance(node, int)
        if fault in PEER_FAULTS:
            peer = int(_number(kw["peer"]))
            if not undo:
                await _peer_connected(cluster, node, peer, PEER_WAIT)
            if fault == "throttle":
                rate = 0.0 if undo else _number(kw["kib_per_s"])
                result = await cluster.throttle(node, peer, rate)
            elif fault in ("panic", "stall"):
                extra: dict[str, ArgValue] = {k: kw[k] for k in ("service", "seconds") if k in kw}
                method = getattr(cluster, fault)
                result = await method(node, peer, **extra)
            elif undo and fault == "unpark":
                # A park ends with its connection too: a closed one is already not parked.
                result = await cluster.unpark(node, peer, check=False)
                if not result.ok and result.refusal is not Refusal.NOT_PARKED:
                    raise FaultRefused(f"node {node}: unpark {peer}: {result.message}", result)
            else:
                result = await getattr(cluster, fault)(node, peer)
            done.append(f"node {node}: {result.effect or result.refusal}")
        elif fault in ("delay", "bandwidth"):
            raw = kw["to"]
            to = list(raw) if isinstance(raw, tuple) else [int(_number(raw))]
            extra = {k: v for k, v in kw.items() if k != "to"}
            await getattr(cluster, fault)(node, to, **extra)
            done.append(f"node {node}")
        elif fault == "heal":
            await cluster.heal(node)
            done.append(f"node {node} healed")
        else:  # kill, restart, pause, resume
            await getattr(cluster, fault)(node)
            done.append(f"node {node} {fault}")
    return "; ".join(done)


async def run_steps(
    cluster: Cluster,
    steps: Iterable[Step],
    *,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Apply ``steps`` to ``cluster`` at their ``at`` (seconds from now), each undone after its
    ``duration``, in time order; return what came of each.

    One at a time: a step whose predecessor took long (a restart waits for its node to be
    ready) runs late rather than alongside it, so the cluster never sees two faults race.
    Nothing a step does raises out of here (a refusal is an :class:`Outcome`); cancellation
    does.
    """
    from zakura.chaos.cluster import ClusterError
    from zakura.testnet import TestnetError

    events: list[tuple[float, int, int, Step, bool]] = []
    for order, step in enumerate(steps):
        events.append((step.at, 1, order, step, False))
        if step.duration is not None and step.fault in TIMED_FAULTS:
            events.append((step.at + step.duration, 0, order, step, True))  # undo first
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    t0 = time.monotonic()
    outcomes: list[Outcome] = []
    for at, _, _, step, undo in events:
        delay = t0 + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # the schedule's own clock, not a synchronisation
        try:
            detail, ok = await _apply(cluster, step, undo), True
        except (ClusterError, TestnetError, TimeoutError, ValueError) as exc:
            detail, ok = f"{type(exc).__name__}: {exc}"[:300], False
        outcome = Outcome(
            step, "undo" if undo else "apply", round(time.monotonic() - t0, 3), ok, detail
        )
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return outcomes
