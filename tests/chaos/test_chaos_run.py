"""``zakura chaos run`` as an engineer runs it: every shipped scenario passes with each of its
invariants reported with evidence, a bad file or flag is refused before anything starts, and
SIGINT leaves no node process behind. Real processes; waits poll conditions with deadlines."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from zakura.chaos.scenario import load

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))
ZAKURA = [sys.executable, "-m", "zakura"]


def run(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ZAKURA, *args], capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT
    )


def test_help_lists_every_flag_with_its_default() -> None:
    for level in (["chaos"], ["chaos", "run"]):
        result = run(*level, "--help")
        assert result.returncode == 0, result.stderr
        assert "example" in result.stdout
    out = run("chaos", "run", "--help").stdout
    for flag in ("FILE", "--seed", "--report", "--junit", "--data-dir"):
        assert flag in out
    options = out.split("options:", 1)[1].split("example", 1)[0]
    for entry in re.split(r"\n  (?=-)", options)[1:]:
        assert entry.startswith("-h") or "default" in entry, entry


def test_shipped_scenarios_exist_and_parse() -> None:
    names = {p.name for p in SCENARIOS}
    assert {"partition-heal.toml", "panic-storm.toml"} <= names
    for path in SCENARIOS:
        assert load(path).invariants


@pytest.mark.timeout(180)
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_shipped_scenario_passes_with_evidence(path: Path, tmp_path: Path) -> None:
    report, junit = tmp_path / "report.json", tmp_path / "junit.xml"
    result = run(
        "chaos", "run", str(path), "--report", str(report), "--junit", str(junit), timeout=170
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS" in result.stdout
    doc = json.loads(report.read_text())
    assert doc["passed"] is True
    nemesis = load(path).nemesis
    if nemesis is not None:  # printed, so a failure reruns exactly
        assert f"nemesis seed {nemesis.seed}" in result.stdout and doc["seed"] == nemesis.seed
    listed = [row["name"] for row in doc["invariants"]]
    assert listed[: len(load(path).invariants)] == list(load(path).invariants)
    for row in doc["invariants"]:
        assert row["ok"] and row["evidence"], row
    assert doc["timeline"], "no fault reached the cluster"
    cases = ET.parse(junit).getroot().findall("testcase")
    assert [c.get("name") for c in cases] == listed
    assert not any(c.find("failure") is not None for c in cases)


def test_a_seed_without_a_nemesis_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain.toml"
    plain.write_text('[[step]]\nat = 0\nfault = "heal"\n')
    result = run("chaos", "run", str(plain), "--seed", "3")
    assert result.returncode == 2
    errors = [ln for ln in result.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and "--seed" in errors[0] and "[nemesis]" in errors[0]


@pytest.mark.parametrize(
    ("text", "line", "word"),
    [
        ('[[step]]\nat = 1\nfault = "explode"\ntarget = 0\n', 3, "unknown fault"),
        ('[[step]]\nat = -2\nfault = "kill"\ntarget = 0\n', 2, "negative"),
        ('[[step]]\nat = 1\nfault = "kill"\ntarget = 9\n', 4, "no node 9"),
        ("[cluster\nnodes = 3\n", 1, "TOML syntax"),
    ],
)
def test_a_bad_file_is_refused_before_anything_starts(
    tmp_path: Path, text: str, line: int, word: str
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    result = run("chaos", "run", str(bad), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"{bad}:{line}: " in result.stderr and word in result.stderr, result.stderr
    assert not (tmp_path / "data").exists()  # no node was started


def node_pids(marker: str) -> list[int]:
    """Pids of running processes whose command line mentions ``marker`` (our data dir)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmd and " node " in cmd and state not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


def wait_until(cond: object, timeout: float, what: str) -> None:
    assert callable(cond)
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


@pytest.mark.timeout(120)
def test_sigint_leaves_no_node_behind(tmp_path: Path) -> None:
    scenario = tmp_path / "long.toml"
    scenario.write_text('[cluster]\nnodes = 3\nblocks = 10\n\n[[step]]\nat = 300\nfault = "heal"\n')
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [*ZAKURA, "chaos", "run", str(scenario), "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        seen = []
        deadline = time.monotonic() + 60
        for line in proc.stdout:  # wait on the run's own word that the faults are starting
            seen.append(line)
            if "faults start now" in line or time.monotonic() > deadline:
                break
        assert any("faults start now" in ln for ln in seen), "".join(seen)
        assert len(node_pids(str(data))) == 3
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 130, "".join(seen) + rest
        wait_until(lambda: not node_pids(str(data)), 15, "every node process to be gone")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_same_seed_gives_the_same_schedule_in_two_runs() -> None:
    storm = str(ROOT / "scenarios" / "panic-storm.toml")
    first = run("chaos", "run", storm, "--seed", "5", "--dry-run")
    again = run("chaos", "run", storm, "--seed", "5", "--dry-run")
    other = run("chaos", "run", storm, "--seed", "6", "--dry-run")
    assert first.returncode == again.returncode == other.returncode == 0, first.stderr
    assert "nemesis seed 5" in first.stdout and "[nemesis]" in first.stdout
    assert first.stdout == again.stdout
    schedule = first.stdout.split("steps:", 1)[1]
    assert schedule != other.stdout.split("steps:", 1)[1]


@pytest.mark.timeout(120)
def test_a_failed_check_exits_1_and_is_reported(tmp_path: Path) -> None:
    """The verdict can fail: a timeline step that does not take effect (resuming a node that
    runs) fails its row, the report, the JUnit case and the exit code, and keeps the data."""
    scenario = tmp_path / "fails.toml"
    scenario.write_text(
        'invariants = ["same_best_chain"]\n[cluster]\nnodes = 2\nblocks = 5\n\n'
        '[[step]]\nat = 0\nfault = "resume"\ntarget = 1\n'
    )
    report, junit = tmp_path / "report.json", tmp_path / "junit.xml"
    result = run(
        "chaos",
        "run",
        str(scenario),
        "--report",
        str(report),
        "--junit",
        str(junit),
        timeout=110,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL" in result.stdout and "data dirs kept in" in result.stdout
    doc = json.loads(report.read_text())
    assert doc["passed"] is False
    rows = {r["name"]: r for r in doc["invariants"]}
    assert rows["same_best_chain"]["ok"]
    failed = rows["timeline steps took effect"]
    assert not failed["ok"] and "running" in failed["violations"][0]["evidence"]
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().findall("testcase")}
    assert cases["timeline steps took effect"].find("failure") is not None
    kept = result.stdout.split("data dirs kept in", 1)[1].split()[0]
    shutil.rmtree(kept, ignore_errors=True)
