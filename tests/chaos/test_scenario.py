"""Scenario files: a good one parses into the cluster spec, steps, nemesis and invariants; each
kind of bad one is refused as ``FILE:LINE: reason`` naming the offending line. No process is
started here."""

from __future__ import annotations

from pathlib import Path

import pytest

from zakura.chaos.nemesis import Step
from zakura.chaos.scenario import INVARIANT_NAMES, ScenarioError, load, parse

GOOD = """\
description = "partition while node 0 mines"
invariants = ["same_best_chain", "panics_match"]

[cluster]
nodes = 3
blocks = 40
mine_interval = 1.0
idle_timeout = 3

[[step]]
at = 4.0
fault = "panic"
target = 1
peer = 2
service = "block_sync"

[[step]]
at = 1.0
fault = "partition"
target = [[0], [1, 2]]
duration = 3.0

[nemesis]
seed = 9
kinds = ["park"]
rate = 1.0
duration = 5.0
start = 10.0
"""


def test_a_good_file_parses() -> None:
    sc = parse(GOOD, "good.toml")
    assert sc.cluster.kwargs() == {
        "nodes": 3,
        "blocks": 40,
        "mine_interval": 1.0,
        "hostile": None,
        "seed": 1,
        "idle_timeout": 3.0,
    }
    assert sc.steps == (
        Step(1.0, "partition", ((0,), (1, 2)), (), 3.0, "timeline"),
        Step(4.0, "panic", (1,), (("peer", 2), ("service", "block_sync")), None, "timeline"),
    )
    assert sc.invariants == ("same_best_chain", "panics_match")
    assert sc.nemesis is not None and sc.nemesis.seed == 9
    merged = sc.schedule()
    assert merged[:2] == sc.steps
    assert merged[2:] and all(s.fault == "park" and s.at >= 10.0 for s in merged[2:])
    assert sc.schedule(9) == merged and sc.schedule(10) != merged  # --seed overrides


def test_defaults_check_every_invariant(tmp_path: Path) -> None:
    path = tmp_path / "min.toml"
    path.write_text('[[step]]\nat = 0\nfault = "heal"\n')
    sc = load(path)
    assert sc.invariants == tuple(INVARIANT_NAMES)
    assert sc.steps == (Step(0.0, "heal", (), (), None, "timeline"),)
    assert sc.nemesis is None and sc.cluster.nodes == 3 and sc.cluster.idle_timeout is None


def refused(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as exc:
        parse(text, "bad.toml")
    return exc.value


STEP = '[cluster]\nnodes = 3\n\n[[step]]\nat = 1\nfault = "kill"\ntarget = 1\n\n[[step]]\n'


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (STEP + 'at = 2\nfault = "explode"\ntarget = 0\n', 11, ["unknown fault 'explode'"]),
        (STEP + 'at = 2\nfault = "pause"\ntarget = 3\n', 12, ["no node 3", "0..2"]),
        (STEP + 'at = 2\nfault = "pause"\ntarget = [0, 7]\n', 12, ["no node 7"]),
        (STEP + 'at = 2\nfault = "park"\ntarget = 0\npeer = 5\n', 13, ["peer", "no node 5"]),
        (STEP + 'at = 2\nfault = "partition"\ntarget = [[0], [0, 1]]\n', 12, ["two groups"]),
        (STEP + 'at = -1\nfault = "pause"\ntarget = 0\n', 10, ["at must not be negative"]),
        (STEP + 'at = 2\nfault = "pause"\ntarget = 0\ncolour = "red"\n', 13, ["'colour'"]),
        (STEP + 'at = 2\nfault = "panic"\ntarget = 0\npeer = 1\nservice = "x"\n', 14, ["x"]),
        (
            STEP + 'at = 2\nfault = "disconnect"\ntarget = 0\npeer = 1\nduration = 1\n',
            14,
            ["duration"],
        ),
        (STEP + 'at = 2\nfault = "park"\ntarget = 0\n', 9, ["needs 'peer'"]),
        ("[cluster]\nnodes = 3\nsize = 4\n", 3, ["unknown key 'size' in [cluster]"]),
        ('invariants = ["same_best_chain"]\nextra = 1\n', 2, ["unknown key 'extra'"]),
        ('invariants = ["all_good"]\n', 1, ["unknown invariant 'all_good'"]),
        ("[nemesis]\nseed = 1\nrate = 1\nduration = 5\nkinds = ['heal']\n", 5, ["'heal'"]),
        ('[cluster]\nhostile = { count = 1, mode = "rude" }\n', 2, ["hostile mode 'rude'"]),
        ("[cluster]\nnodes = 3\n[[step]]\nat = 1\nfault = \n", 5, ["TOML syntax"]),
        ('[cluster]\nnodes = "three"\n', 2, ["whole number"]),
        ("[cluster]\nnodes = 3\nidle_timeout = 0.5\n", 3, ["idle_timeout", "below 1"]),
        ("[cluster]\nidle_timeout = 601\n", 2, ["idle_timeout", "above 600"]),
        ('[cluster]\nidle_timeout = "3s"\n', 2, ["idle_timeout must be a number"]),
    ],
)
def test_bad_files_are_refused_with_file_line_and_reason(
    text: str, line: int, words: list[str]
) -> None:
    err = refused(text)
    assert err.line == line, str(err)
    assert str(err).startswith(f"bad.toml:{line}: "), str(err)
    for word in words:
        assert word in err.reason, str(err)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load(tmp_path / "nope.toml")


def test_start_when_says_when_the_clock_starts() -> None:
    assert parse('start_when = "connected"\n').start_when == "connected"
    assert parse("").start_when == "converged"
    err = refused('description = "x"\nstart_when = "later"\n')
    assert err.line == 2 and "'later'" in err.reason
