"""The nemesis schedule is a pure function of its seed: same seed, same faults at the same
times on the same nodes; another seed, another schedule. No process is started here."""

from __future__ import annotations

import pytest

from zakura.chaos.nemesis import (
    DEFAULT_KINDS,
    FAULTS,
    NEMESIS_KINDS,
    TIMED_FAULTS,
    Step,
    schedule,
)


def test_same_seed_same_schedule_times_and_targets() -> None:
    first = schedule(42, 30.0, DEFAULT_KINDS, 1.0, 4)
    again = schedule(42, 30.0, DEFAULT_KINDS, 1.0, 4)
    assert first == again
    assert [(s.at, s.fault, s.target) for s in first] == [(s.at, s.fault, s.target) for s in again]
    assert len(first) >= 5  # 30 s at one a second: a real schedule, not an empty one


def test_another_seed_another_schedule() -> None:
    assert schedule(1, 30.0, DEFAULT_KINDS, 1.0, 4) != schedule(2, 30.0, DEFAULT_KINDS, 1.0, 4)


@pytest.mark.parametrize("seed", range(20))
def test_a_schedule_is_sound(seed: int) -> None:
    """In order, inside the run, on known nodes, timed faults undone before the end, and no
    two faults on one node at once."""
    steps = schedule(seed, 20.0, NEMESIS_KINDS, 2.0, 3)
    assert [s.at for s in steps] == sorted(s.at for s in steps)
    busy: dict[int, float] = {}
    for s in steps:
        assert s.fault in FAULTS and 0 <= s.at < 20.0
        assert set(s.nodes) <= {0, 1, 2}
        if s.fault in TIMED_FAULTS:
            assert s.duration is not None and s.at + s.duration <= 20.0 + 1e-9
        for n in s.nodes:
            assert busy.get(n, 0.0) <= s.at, (s, busy)
        end = s.at + (s.duration or 0.0) + float(s.kwargs.get("seconds", 0.0))
        for n in s.nodes:
            busy[n] = end


def test_only_the_kinds_asked_for_on_the_nodes_given() -> None:
    steps = schedule(7, 60.0, ["panic"], 1.0, [1, 2])
    assert steps and {s.fault for s in steps} == {"panic"}
    assert all(set(s.nodes) == {1, 2} for s in steps)
    assert all(dict(s.args)["service"] in ("discovery", "header_sync", "block_sync") for s in steps)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"kinds": ["explode"]}, "explode"),
        ({"kinds": ["heal"]}, "heal"),
        ({"kinds": []}, "at least one"),
        ({"rate": 0.0}, "positive"),
        ({"nodes": 1}, "two nodes"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], word: str) -> None:
    args: dict[str, object] = {"seed": 1, "duration": 10.0, "kinds": DEFAULT_KINDS, "rate": 1.0}
    args |= {"nodes": 3} | kwargs
    with pytest.raises(ValueError, match=word):
        schedule(**args)  # type: ignore[arg-type]


def test_a_step_formats_on_one_line() -> None:
    step = Step(1.5, "partition", ((0,), (1, 2)), (), 2.0)
    assert step.format() == "   1.500 s  partition   [[0], [1, 2]]  for 2 s"


@pytest.mark.timeout(120)
async def test_the_runner_applies_and_undoes_steps_on_a_live_cluster() -> None:
    """Each step reaches the cluster's timeline, each timed one is undone, and a refused one
    is an outcome, not an exception."""
    from zakura.chaos.cluster import Cluster
    from zakura.chaos.nemesis import run_steps

    steps = (
        Step(0.0, "partition", ((0,), (1, 2)), (), 1.0, "timeline"),
        Step(1.5, "pause", (2,), (), 1.0, "timeline"),
        Step(3.0, "resume", (1,), (), None, "timeline"),  # not paused: refused
    )
    async with Cluster(nodes=3, blocks=20) as c:
        await c.connected(30)
        outcomes = await run_steps(c, steps)
        assert [(o.step.fault, o.phase, o.ok) for o in outcomes] == [
            ("partition", "apply", True),
            ("partition", "undo", True),
            ("pause", "apply", True),
            ("pause", "undo", True),
            ("resume", "apply", False),
        ]
        assert "running" in outcomes[-1].detail
        assert [r.fault for r in c.timeline] == ["partition", "heal", "pause", "resume"]
        await c.connected(30)
