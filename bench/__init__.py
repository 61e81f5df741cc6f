"""Benchmarks for the node core: ratios measured side by side in one run.

See docs/ARCHITECTURE.md, "Measuring performance".

Absolute times on a shared machine are noise, so every scenario is run next to its baseline,
interleaved, in the same process, on the same bytes, and reported as a ratio against a goal.
Timed assertions never go in the test suite; ``tests/bench`` only checks that the benchmarks
move the right bytes.

Adding a benchmark: create a module in this package and decorate its entry point with
:func:`register`. ``python -m bench`` imports every module of the package, so registration
is all it takes.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

# Imported before any benchmark module imports asyncssh: it silences asyncssh's DSA notice
# from cryptography 51, which otherwise opens every `make bench` with ten lines of warnings.
import node_core.ssh  # noqa: F401


class CorrectnessError(Exception):
    """A benchmark moved the wrong bytes (or lost some): its figures mean nothing."""


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """Command-line options every benchmark understands; ``None`` means its own default."""

    quick: bool = False
    size_mib: int | None = None
    repetitions: int | None = None
    chunk_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """One row of the table: a scenario's median against its baseline's median."""

    benchmark: str
    scenario: str
    baseline: str
    unit: str
    baseline_value: float
    measured_value: float
    goal: float | None  # minimum acceptable ``measured / baseline``; higher is better
    samples: dict[str, list[float]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    #: For costs (lower is better): the largest acceptable ``measured_value``, in ``unit``,
    #: and the largest acceptable ``measured / baseline`` ratio.
    max_value: float | None = None
    max_ratio: float | None = None
    #: One line printed under the table: figures the issue asks for that are not a ratio
    #: (RSS and CPU per session, say), so a reader of ``make bench`` sees them without the JSON.
    note: str = ""

    @property
    def ratio(self) -> float:
        if self.baseline_value <= 0:
            return math.nan
        return self.measured_value / self.baseline_value

    @property
    def meets_goal(self) -> bool | None:
        checks: list[bool] = []
        if self.goal is not None:
            checks.append(self.ratio >= self.goal)
        if self.max_value is not None:
            checks.append(self.measured_value <= self.max_value)
        if self.max_ratio is not None:
            checks.append(self.ratio <= self.max_ratio)
        return all(checks) if checks else None

    def goal_text(self) -> str:
        parts = []
        if self.goal is not None:
            parts.append(f">= {self.goal:.2f}x")
        if self.max_value is not None:
            parts.append(f"<= {self.max_value:g} {self.unit}")
        if self.max_ratio is not None:
            parts.append(f"<= {self.max_ratio:.2f}x")
        return ", ".join(parts) or "-"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        data["meets_goal"] = self.meets_goal
        return data


BenchFn = Callable[[BenchOptions], Awaitable[list[ScenarioResult]]]


@dataclass(frozen=True, slots=True)
class Benchmark:
    name: str
    description: str
    run: BenchFn


#: Every registered benchmark, in registration order.
REGISTRY: list[Benchmark] = []


def register(name: str, description: str) -> Callable[[BenchFn], BenchFn]:
    """Decorator: add ``fn`` to :data:`REGISTRY` under ``name``."""

    def deco(fn: BenchFn) -> BenchFn:
        if any(b.name == name for b in REGISTRY):
            raise ValueError(f"benchmark {name!r} registered twice")
        REGISTRY.append(Benchmark(name, description, fn))
        return fn

    return deco


def discover() -> list[Benchmark]:
    """Import every module of this package so their benchmarks register themselves."""
    for info in pkgutil.iter_modules(__path__, prefix=f"{__name__}."):
        if info.name.rpartition(".")[2].startswith("_"):
            continue
        importlib.import_module(info.name)
    return list(REGISTRY)
