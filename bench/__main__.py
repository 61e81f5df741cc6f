"""``python -m bench``: run every registered benchmark, print a table, write JSON results.

Each row is a scenario measured side by side with its baseline in this one process; the figure that
matters is the ratio, compared with the scenario's goal (docs/ARCHITECTURE.md, "Measuring
performance"). Results go to ``bench/results/<UTC timestamp>.json`` (gitignored). The exit status is
1 when a benchmark moved the wrong bytes or crashed, and, with ``--strict``, when a ratio misses its
goal; otherwise 0, because a slow shared machine is not a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench import Benchmark, BenchOptions, CorrectnessError, ScenarioResult, discover

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None, names: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "Run the zakura-console benchmarks. Every scenario runs interleaved with its "
            "baseline in this process, on the same bytes; the table shows both medians and "
            "their ratio against the goal. Results are also written as JSON."
        ),
        epilog="Benchmarks: " + ", ".join(names),
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes (a smoke run in seconds, noisy figures)"
    )
    parser.add_argument(
        "--mb",
        type=int,
        metavar="MIB",
        help="payload size in MiB per transfer (default 256; 16 with --quick)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        metavar="N",
        help="interleaved repetitions of each scenario and its baseline (default 3)",
    )
    parser.add_argument(
        "--chunk-kib",
        type=int,
        metavar="KIB",
        help="write / frame payload size in KiB (default 64)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=names,
        metavar="NAME",
        help="run only this benchmark (repeatable)",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS_DIR,
        help=f"where to write the JSON results (default {RESULTS_DIR})",
    )
    parser.add_argument("--no-save", action="store_true", help="do not write a JSON results file")
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a ratio misses its goal"
    )
    args = parser.parse_args(argv)
    for flag in ("mb", "repeat", "chunk_kib"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    return args


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.1f}"


def render(results: list[ScenarioResult], failures: dict[str, str]) -> Table:
    table = Table(title="zakura-console benchmarks (medians; ratio = measured / baseline)")
    # The scenario, baseline and goal wrap; the figures never do (a squeezed "4,11…" reads as
    # nothing), so on a narrow terminal the words give way, not the numbers.
    table.add_column("scenario", ratio=3, min_width=22)
    table.add_column("baseline", ratio=2, min_width=14)
    table.add_column("baseline median", justify="right", no_wrap=True)
    table.add_column("measured median", justify="right", no_wrap=True)
    table.add_column("ratio", justify="right", no_wrap=True)
    table.add_column("goal", justify="right", min_width=9)
    for r in results:
        met = r.meets_goal
        mark = "" if met is None else ("[green]ok[/]" if met else "[red]below[/]")
        table.add_row(
            r.scenario,
            r.baseline,
            f"{_fmt(r.baseline_value)} {r.unit}",
            f"{_fmt(r.measured_value)} {r.unit}",
            # A ratio just under its goal gets a third decimal: 0.7985 must not read "0.80 below".
            f"{r.ratio:.3f}" if met is False else f"{r.ratio:.2f}",
            f"{r.goal_text()} {mark}".strip(),
        )
    for name, error in failures.items():
        table.add_row(f"[red]{escape(name)}[/]", "[red]FAILED[/]", "", "", "", escape(error[:80]))
    return table


async def run_all(
    benchmarks: list[Benchmark], options: BenchOptions, console: Console
) -> tuple[list[ScenarioResult], dict[str, str]]:
    results: list[ScenarioResult] = []
    failures: dict[str, str] = {}
    for bench in benchmarks:
        console.print(f"[bold]{bench.name}[/]: {bench.description} ...")
        started = time.perf_counter()
        try:
            rows = await bench.run(options)
        except CorrectnessError as exc:
            failures[bench.name] = f"wrong bytes: {exc}"
            console.print(f"[red]{bench.name} moved the wrong bytes:[/] {escape(str(exc))}")
            continue
        except Exception as exc:
            failures[bench.name] = f"{type(exc).__name__}: {exc}"
            console.print(f"[red]{bench.name} crashed:[/]")
            console.print_exception()
            continue
        results.extend(rows)
        console.print(f"  done in {time.perf_counter() - started:.1f} s")
    return results, failures


def write_results(
    directory: Path,
    options: BenchOptions,
    results: list[ScenarioResult],
    failures: dict[str, str],
) -> Path:
    now = datetime.now(UTC)
    doc: dict[str, Any] = {
        "timestamp": now.isoformat(),
        "python": sys.version,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "options": {
            "quick": options.quick,
            "size_mib": options.size_mib,
            "repetitions": options.repetitions,
            "chunk_bytes": options.chunk_bytes,
        },
        "results": [r.to_json() for r in results],
        "failures": failures,
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{now.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(_finite(doc), indent=2, allow_nan=False) + "\n")
    return path


def _finite(value: Any) -> Any:
    """Strict JSON: NaN and infinities become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    registry = discover()
    args = parse_args(argv, [b.name for b in registry])
    options = BenchOptions(
        quick=args.quick,
        size_mib=args.mb,
        repetitions=args.repeat,
        chunk_bytes=args.chunk_kib * 1024 if args.chunk_kib else None,
    )
    selected = [b for b in registry if not args.only or b.name in args.only]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console = Console()
    if not console.is_terminal:  # piped or under make: do not squeeze the table to 80 columns
        console = Console(width=140)
    results, failures = asyncio.run(run_all(selected, options, console))
    console.print(render(results, failures))
    for r in results:
        if r.note:
            console.print(f"  {escape(r.scenario)}: {escape(r.note)}")
    if not args.no_save:
        path = write_results(args.results_dir, options, results, failures)
        console.print(f"results written to {path}")
    if failures:
        return 1
    if args.strict and any(r.meets_goal is False for r in results):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
