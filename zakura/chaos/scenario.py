"""Scenario files: a chaos run written down in TOML, checked whole before anything starts.

::

    description = "partition while node 0 mines, heal, converge"
    invariants = ["same_best_chain", "store_sound", "panics_match"]

    [cluster]
    nodes = 3
    blocks = 50
    mine_interval = 1.0
    # hostile = { count = 1, mode = "silent" }
    # idle_timeout = 3.0          # every node's --idle-timeout (1 to 600 s; default 150)

    [[step]]
    at = 2.0                      # seconds after the cluster converged
    fault = "partition"
    target = [[0], [1, 2]]        # groups; other faults: a node index or a list of them
    duration = 5.0                # healed after 5 s

    [[step]]
    at = 9.0
    fault = "panic"
    target = 1
    peer = 2
    service = "block_sync"

    [nemesis]                     # optional: random faults on top (zakura.chaos.nemesis)
    seed = 7
    kinds = ["panic", "park"]
    rate = 0.5
    duration = 10.0

Why checked whole and up front: a typo found after a 20-node cluster started and ran for a
minute wastes the minute, and a file that silently ignores an unknown key tests less than its
author thinks. So every mistake (TOML syntax, an unknown key, an unknown fault or invariant, a
node index out of range, a negative time) is a :class:`ScenarioError` reading
``FILE:LINE: reason``, the line being that of the offending key (or of its table).

Sans-I/O but for :func:`load` reading the file: :func:`parse` takes the text.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from node_core.block_sync.hostile import ALL_HOSTILE_MODES
from node_core.control import PANIC_SERVICES, STALL_SERVICES
from zakura.args import IDLE_TIMEOUT_MAX, IDLE_TIMEOUT_MIN
from zakura.chaos.invariants import (
    CONVERGED,
    HONEST_KEPT,
    HOSTILE_RECORDED,
    NO_BLOCK_LOST,
    NO_STRANDED_WORK,
    PANICS_MATCH,
    STORE_SOUND,
)
from zakura.chaos.nemesis import (
    DEFAULT_KINDS,
    FAULTS,
    NEMESIS_KINDS,
    PEER_FAULTS,
    TIMED_FAULTS,
    ArgValue,
    Step,
    Target,
    schedule,
)

__all__ = [
    "INVARIANT_NAMES",
    "ClusterSpec",
    "NemesisSpec",
    "Scenario",
    "ScenarioError",
    "load",
    "parse",
]

#: The names a scenario's ``invariants`` list uses (the functions of
#: :mod:`zakura.chaos.invariants`) and the invariant each stands for.
INVARIANT_NAMES: Mapping[str, str] = {
    "same_best_chain": CONVERGED,
    "store_sound": STORE_SOUND,
    "no_block_lost": NO_BLOCK_LOST,
    "no_stranded_work": NO_STRANDED_WORK,
    "panics_match": PANICS_MATCH,
    "honest_not_punished": HONEST_KEPT,
    "hostile_recorded": HOSTILE_RECORDED,
}

TOP_KEYS = (
    "description",
    "invariants",
    "converge_timeout",
    "start_when",
    "cluster",
    "step",
    "nemesis",
)
#: When the timeline's clock starts: once the nodes share one tip, or as soon as they are
#: connected (to break a cluster in the middle of its first sync).
START_WHEN = ("converged", "connected")
CLUSTER_KEYS = ("nodes", "blocks", "mine_interval", "hostile", "seed", "idle_timeout")
HOSTILE_KEYS = ("count", "mode", "delay", "rate")
NEMESIS_KEYS = ("seed", "kinds", "rate", "duration", "start", "nodes")
STEP_KEYS = ("at", "fault", "target", "duration")
#: The arguments each fault takes, beyond ``at``, ``fault``, ``target`` and ``duration``;
#: those in :data:`REQUIRED_ARGS` must be given.
FAULT_ARGS: Mapping[str, tuple[str, ...]] = {
    "disconnect": ("peer",),
    "panic": ("peer", "service"),
    "park": ("peer",),
    "unpark": ("peer",),
    "stall": ("peer", "service", "seconds"),
    "throttle": ("peer", "kib_per_s"),
    "partition": (),
    "delay": ("to", "ms", "jitter_ms"),
    "bandwidth": ("to", "kib_per_s"),
    "heal": (),
    "kill": (),
    "restart": (),
    "pause": (),
    "resume": (),
}
REQUIRED_ARGS: Mapping[str, tuple[str, ...]] = {
    **{f: ("peer",) for f in PEER_FAULTS},
    "throttle": ("peer", "kib_per_s"),
    "delay": ("to", "ms"),
    "bandwidth": ("to", "kib_per_s"),
}
#: Seconds the honest nodes get to converge after the cluster starts and after the faults.
DEFAULT_CONVERGE_TIMEOUT = 60.0


class ScenarioError(ValueError):
    """A scenario file that cannot run: ``FILE:LINE: reason``."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    """The ``[cluster]`` table: the :class:`~zakura.chaos.cluster.Cluster` keywords."""

    nodes: int = 3
    blocks: int = 0
    mine_interval: float | None = None
    #: ``{"count": ..., "mode": ...}`` as :meth:`HostileSpec.of` takes it; None: all honest.
    hostile: tuple[tuple[str, Any], ...] | None = None
    seed: int = 1
    #: Every node's ``--idle-timeout`` in seconds; None: the node's default (150 s).
    idle_timeout: float | None = None

    @property
    def hostile_count(self) -> int:
        return 0 if self.hostile is None else int(dict(self.hostile).get("count", 1))

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``Cluster(**spec.kwargs())``."""
        return {
            "nodes": self.nodes,
            "blocks": self.blocks,
            "mine_interval": self.mine_interval,
            "hostile": None if self.hostile is None else dict(self.hostile),
            "seed": self.seed,
            "idle_timeout": self.idle_timeout,
        }


@dataclass(frozen=True, slots=True)
class NemesisSpec:
    """The ``[nemesis]`` table: :func:`zakura.chaos.nemesis.schedule`'s arguments."""

    seed: int
    kinds: tuple[str, ...]
    rate: float
    duration: float
    #: Seconds after the run starts when the nemesis begins.
    start: float = 0.0
    #: The nodes it may aim at; None: every honest node.
    nodes: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    """A parsed, checked scenario file."""

    path: str
    description: str
    cluster: ClusterSpec
    #: The ``[[step]]`` timeline, sorted by ``at`` (origin ``timeline``).
    steps: tuple[Step, ...]
    nemesis: NemesisSpec | None
    #: Names from :data:`INVARIANT_NAMES`, in file order.
    invariants: tuple[str, ...]
    converge_timeout: float = DEFAULT_CONVERGE_TIMEOUT
    #: One of :data:`START_WHEN`.
    start_when: str = "converged"

    def nemesis_seed(self, override: int | None = None) -> int | None:
        """The nemesis seed a run uses: ``override`` (``--seed``), else the file's."""
        if self.nemesis is None:
            return None
        return self.nemesis.seed if override is None else override

    def schedule(self, seed: int | None = None) -> tuple[Step, ...]:
        """The timeline and the nemesis's steps (seeded by ``seed`` when given), merged in
        time order."""
        steps = list(self.steps)
        spec = self.nemesis
        if spec is not None:
            honest = tuple(range(self.cluster.nodes - self.cluster.hostile_count))
            nodes = spec.nodes if spec.nodes is not None else honest
            drawn = schedule(
                self.nemesis_seed(seed) or 0, spec.duration, spec.kinds, spec.rate, nodes
            )
            steps += [
                Step(round(s.at + spec.start, 3), s.fault, s.target, s.args, s.duration, s.origin)
                for s in drawn
            ]
        return tuple(sorted(steps, key=lambda s: s.at))

    @property
    def duration(self) -> float:
        """Seconds from the first step to the end of the last fault."""
        ends = [s.at + (s.duration or 0.0) for s in self.steps]
        if self.nemesis is not None:
            ends.append(self.nemesis.start + self.nemesis.duration)
        return max(ends, default=0.0)


# ---------------------------------------------------------------------- lines
_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")


class _Lines:
    """Where a key or a table is in the text, for error messages (1-based lines)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def _headers(self) -> list[tuple[int, str, bool]]:
        out = []
        for i, line in enumerate(self.lines):
            m = _HEADER.match(line)
            if m:
                out.append((i, m.group(1).strip(), line.lstrip().startswith("[[")))
        return out

    def table(self, name: str | None, index: int = 0) -> tuple[int, int]:
        """The line span (start, end) of table ``name`` (its ``index``-th for an array of
        tables); None: the top level, before the first header."""
        headers = self._headers()
        if name is None:
            return 0, headers[0][0] if headers else len(self.lines)
        found = [i for i, (_, n, _) in enumerate(headers) if n == name]
        if len(found) <= index:
            return 0, len(self.lines)
        k = found[index]
        start = headers[k][0]
        end = headers[k + 1][0] if k + 1 < len(headers) else len(self.lines)
        return start, end

    def of(self, table: str | None, key: str | None = None, index: int = 0) -> int:
        """The line of ``key`` in ``table`` (of the table's header when the key is not
        found there, e.g. an inline table)."""
        start, end = self.table(table, index)
        if key is not None:
            pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*[=.]")
            for i in range(start, end):
                if pattern.match(self.lines[i]):
                    return i + 1
        return start + 1


# ---------------------------------------------------------------------- parsing
def load(path: Path | str) -> Scenario:
    """Read and check the scenario file at ``path``.

    Raises:
        ScenarioError: ``FILE:LINE: reason`` (LINE 0 when the file cannot be read).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(str(path), 0, f"cannot read: {exc}") from None
    return parse(text, str(path))


_TOML_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def parse(text: str, path: str = "<scenario>") -> Scenario:
    """Check the scenario ``text`` (from ``path``, named in errors) and return it.

    Raises:
        ScenarioError: The first mistake found, ``FILE:LINE: reason``.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _TOML_AT.search(msg)
        line = int(m.group(1)) if m else 1
        where = f" (column {m.group(2)})" if m else ""
        raise ScenarioError(path, line, f"TOML syntax: {_TOML_AT.sub('', msg)}{where}") from None
    return _Parser(path, _Lines(text)).scenario(doc)


class _Parser:
    def __init__(self, path: str, lines: _Lines) -> None:
        self.path = path
        self.lines = lines
        self.size = 3

    def fail(
        self, reason: str, table: str | None, key: str | None = None, index: int = 0
    ) -> NoReturn:
        raise ScenarioError(self.path, self.lines.of(table, key, index), reason)

    def unknown(
        self, doc: Mapping[str, Any], allowed: Sequence[str], table: str | None, index: int = 0
    ) -> None:
        for key in doc:
            if key not in allowed:
                where = "" if table is None else f" in [{table}]"
                self.fail(
                    f"unknown key {key!r}{where} (expected one of: {', '.join(allowed)})",
                    table,
                    key,
                    index,
                )

    def number(
        self,
        doc: Mapping[str, Any],
        key: str,
        table: str | None,
        index: int = 0,
        *,
        minimum: float = 0.0,
        positive: bool = False,
        whole: bool = False,
    ) -> float:
        value = doc[key]
        kind = "a whole number" if whole else "a number"
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (whole and not isinstance(value, int))
        ):
            self.fail(f"{key} must be {kind}, got {value!r}", table, key, index)
        if positive and not value > 0:
            self.fail(f"{key} must be positive, got {value}", table, key, index)
        if value < minimum:
            word = "negative" if minimum == 0 else f"below {minimum:g}"
            self.fail(f"{key} must not be {word}, got {value}", table, key, index)
        return float(value)

    def node(self, value: object, key: str, table: str | None, index: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{key}: expected a node index, got {value!r}", table, key, index)
        if not 0 <= value < self.size:
            self.fail(
                f"{key}: no node {value}, the cluster has nodes 0..{self.size - 1}",
                table,
                key,
                index,
            )
        return value

    def nodes(self, value: object, key: str, table: str | None, index: int) -> tuple[int, ...]:
        if isinstance(value, list):
            out = tuple(self.node(v, key, table, index) for v in value)
            if not out:
                self.fail(f"{key}: an empty list names no node", table, key, index)
            return out
        return (self.node(value, key, table, index),)

    # ------------------------------------------------------------------ tables
    def scenario(self, doc: Mapping[str, Any]) -> Scenario:
        self.unknown(doc, TOP_KEYS, None)
        cluster = self.cluster(doc.get("cluster", {}))
        self.size = cluster.nodes
        raw_steps = doc.get("step", [])
        if not isinstance(raw_steps, list):
            self.fail("step must be an array of tables: write [[step]]", None, "step")
        steps = tuple(
            sorted((self.step(s, i) for i, s in enumerate(raw_steps)), key=lambda s: s.at)
        )
        nemesis = None if "nemesis" not in doc else self.nemesis(doc["nemesis"])
        invariants = self.invariants(doc.get("invariants", list(INVARIANT_NAMES)))
        timeout = DEFAULT_CONVERGE_TIMEOUT
        if "converge_timeout" in doc:
            timeout = self.number(doc, "converge_timeout", None, positive=True)
        description = doc.get("description", "")
        if not isinstance(description, str):
            self.fail("description must be a string", None, "description")
        start_when = doc.get("start_when", "converged")
        if start_when not in START_WHEN:
            self.fail(
                f"start_when {start_when!r}: expected one of {', '.join(START_WHEN)}",
                None,
                "start_when",
            )
        return Scenario(
            self.path, description, cluster, steps, nemesis, invariants, timeout, start_when
        )

    def cluster(self, doc: object) -> ClusterSpec:
        if not isinstance(doc, dict):
            self.fail("cluster must be a table: write [cluster]", None, "cluster")
        self.unknown(doc, CLUSTER_KEYS, "cluster")
        nodes, blocks, seed = 3, 0, 1
        if "nodes" in doc:
            nodes = int(self.number(doc, "nodes", "cluster", minimum=2, whole=True))
        if "blocks" in doc:
            blocks = int(self.number(doc, "blocks", "cluster", whole=True))
        if "seed" in doc:
            seed = int(self.number(doc, "seed", "cluster", whole=True))
        mine = None
        if "mine_interval" in doc:
            mine = self.number(doc, "mine_interval", "cluster", positive=True)
        hostile = None
        if "hostile" in doc:
            hostile = self.hostile(doc["hostile"], nodes)
        idle = None
        if "idle_timeout" in doc:
            idle = self.number(doc, "idle_timeout", "cluster", minimum=IDLE_TIMEOUT_MIN)
            if idle > IDLE_TIMEOUT_MAX:
                self.fail(
                    f"idle_timeout must not be above {IDLE_TIMEOUT_MAX:g} seconds, got {idle:g}",
                    "cluster",
                    "idle_timeout",
                )
        return ClusterSpec(nodes, blocks, mine, hostile, seed, idle)

    def hostile(self, doc: object, nodes: int) -> tuple[tuple[str, Any], ...]:
        if not isinstance(doc, dict):
            self.fail(
                'hostile must be a table, e.g. { count = 1, mode = "silent" }', "cluster", "hostile"
            )
        for key in doc:
            if key not in HOSTILE_KEYS:
                self.fail(
                    f"unknown key {key!r} in hostile (expected one of: {', '.join(HOSTILE_KEYS)})",
                    "cluster",
                    "hostile",
                )
        mode = doc.get("mode")
        if mode not in ALL_HOSTILE_MODES:
            self.fail(
                f"hostile mode {mode!r}: expected one of {', '.join(ALL_HOSTILE_MODES)}",
                "cluster",
                "hostile",
            )
        count = doc.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count < nodes:
            self.fail(
                f"hostile count {count!r}: expected 1..{nodes - 1} (node 0 is honest)",
                "cluster",
                "hostile",
            )
        return tuple(sorted(doc.items()))

    def step(self, doc: object, index: int) -> Step:
        where = f"step {index + 1}"
        if not isinstance(doc, dict):
            self.fail(f"{where}: expected a table", "step", None, index)
        fault = doc.get("fault")
        if fault is None:
            self.fail(f"{where}: no fault (one of: {', '.join(FAULTS)})", "step", None, index)
        if fault not in FAULTS:
            self.fail(
                f"{where}: unknown fault {fault!r} (expected one of: {', '.join(FAULTS)})",
                "step",
                "fault",
                index,
            )
        allowed = (*STEP_KEYS, *FAULT_ARGS[fault])
        for key in doc:
            if key not in allowed:
                self.fail(
                    f"{where}: unknown key {key!r} for {fault} (expected one of: "
                    f"{', '.join(allowed)})",
                    "step",
                    key,
                    index,
                )
        for key in ("at", *REQUIRED_ARGS.get(fault, ())):
            if key not in doc:
                self.fail(f"{where}: {fault} needs {key!r}", "step", None, index)
        at = self.number(doc, "at", "step", index)
        duration = None
        if "duration" in doc:
            if fault not in TIMED_FAULTS:
                self.fail(
                    f"{where}: {fault} takes no duration (only {', '.join(TIMED_FAULTS)} do)",
                    "step",
                    "duration",
                    index,
                )
            duration = self.number(doc, "duration", "step", index, positive=True)
        target = self.target(doc, fault, where, index)
        args: dict[str, ArgValue] = {}
        for key in FAULT_ARGS[fault]:
            if key in doc:
                args[key] = self.arg(doc, key, fault, where, index)
        if "peer" in args and isinstance(target[0], int) and args["peer"] in target:
            self.fail(f"{where}: a node is not its own peer", "step", "peer", index)
        return Step(at, fault, target, tuple(sorted(args.items())), duration, "timeline")

    def target(self, doc: Mapping[str, Any], fault: str, where: str, index: int) -> Target:
        if "target" not in doc:
            if fault == "heal":
                return ()
            self.fail(f"{where}: {fault} needs a target", "step", None, index)
        value = doc["target"]
        if fault != "partition":
            return self.nodes(value, "target", "step", index)
        if not isinstance(value, list) or not all(isinstance(g, list) for g in value):
            self.fail(
                f"{where}: partition's target is a list of groups, e.g. [[0], [1, 2]]",
                "step",
                "target",
                index,
            )
        groups = tuple(self.nodes(g, "target", "step", index) for g in value)
        seen = [n for g in groups for n in g]
        if len(seen) != len(set(seen)):
            self.fail(f"{where}: a node is in two groups", "step", "target", index)
        if len(groups) < 2:
            self.fail(f"{where}: a partition needs at least two groups", "step", "target", index)
        return groups

    def arg(self, doc: Mapping[str, Any], key: str, fault: str, where: str, index: int) -> ArgValue:
        value = doc[key]
        if key == "peer":
            return self.node(value, key, "step", index)
        if key == "to":
            return self.nodes(value, key, "step", index)
        if key == "service":
            services = PANIC_SERVICES if fault == "panic" else STALL_SERVICES
            if value not in services:
                self.fail(
                    f"{where}: {fault} service {value!r}: expected one of {', '.join(services)}",
                    "step",
                    key,
                    index,
                )
            return str(value)
        positive = key in ("seconds", "ms") or (key == "kib_per_s" and fault == "bandwidth")
        return self.number(doc, key, "step", index, positive=positive)

    def nemesis(self, doc: object) -> NemesisSpec:
        if not isinstance(doc, dict):
            self.fail("nemesis must be a table: write [nemesis]", None, "nemesis")
        self.unknown(doc, NEMESIS_KEYS, "nemesis")
        for key in ("seed", "rate", "duration"):
            if key not in doc:
                self.fail(f"[nemesis] needs {key!r}", "nemesis")
        seed = int(self.number(doc, "seed", "nemesis", whole=True))
        rate = self.number(doc, "rate", "nemesis", positive=True)
        duration = self.number(doc, "duration", "nemesis", positive=True)
        start = self.number(doc, "start", "nemesis") if "start" in doc else 0.0
        kinds = doc.get("kinds", list(DEFAULT_KINDS))
        if not isinstance(kinds, list) or not kinds:
            self.fail("kinds must be a non-empty list of fault names", "nemesis", "kinds")
        for kind in kinds:
            if kind not in NEMESIS_KINDS:
                self.fail(
                    f"nemesis kind {kind!r}: expected one of {', '.join(NEMESIS_KINDS)}",
                    "nemesis",
                    "kinds",
                )
        nodes = None
        if "nodes" in doc:
            nodes = self.nodes(doc["nodes"], "nodes", "nemesis", 0)
            if len(set(nodes)) < 2:
                self.fail("nodes: the nemesis needs at least two nodes", "nemesis", "nodes")
        return NemesisSpec(seed, tuple(kinds), rate, duration, start, nodes)

    def invariants(self, value: object) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            self.fail("invariants must be a non-empty list of names", None, "invariants")
        for name in value:
            if name not in INVARIANT_NAMES:
                self.fail(
                    f"unknown invariant {name!r} (expected one of: {', '.join(INVARIANT_NAMES)})",
                    None,
                    "invariants",
                )
        return tuple(value)
