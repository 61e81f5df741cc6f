"""``zakura chaos run --console`` in a real terminal (tmux): the fleet console opens on the
scenario's cluster, says what the scenario is doing, and prints the verdict when the operator
quits; quitting before the end stops the run and every node. Waits poll the screen."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TMUX = shutil.which("tmux")
pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed")


class Term:
    """A tmux server of the test's own, one session running the command under test."""

    def __init__(self, name: str) -> None:
        self.socket = f"zk-chaos-{name}-{time.monotonic_ns()}"
        # The shell writes the command's exit status here: tmux can mark a pane dead (its
        # terminal closed) before it has reaped the process and knows the status.
        self.status_file = Path(tempfile.gettempdir()) / f"{self.socket}.status"

    def tmux(self, *args: str) -> str:
        assert TMUX is not None
        done = subprocess.run(
            [TMUX, "-L", self.socket, *args], capture_output=True, text=True, timeout=20
        )
        return done.stdout

    def start(self, argv: list[str]) -> None:
        command = f"{shlex.join(argv)}; echo $? > {shlex.quote(str(self.status_file))}"
        self.tmux("new-session", "-d", "-s", "t", "-x", "120", "-y", "36", "-c", str(ROOT),
                  command)  # fmt: skip
        self.tmux("set-option", "-t", "t", "remain-on-exit", "on")

    def screen(self, history: bool = False) -> str:
        return self.tmux("capture-pane", "-t", "t", "-p", *(("-S", "-200") if history else ()))

    def status(self) -> int | None:
        """The command's exit status once it ended, else None."""
        try:
            text = self.status_file.read_text()
        except FileNotFoundError:
            return None
        return int(text) if text.endswith("\n") else None  # whole once the line is written


@pytest.fixture
def term(request: pytest.FixtureRequest) -> Iterator[Term]:
    t = Term(request.node.name[:20].replace("[", "-").replace("]", ""))
    try:
        yield t
    finally:
        t.tmux("kill-server")
        t.status_file.unlink(missing_ok=True)


def wait_for(what: str, check: Callable[[], object], timeout: float, term: Term) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; screen:\n{term.screen(True)}")
        time.sleep(0.2)


def chaos_run(*args: str) -> list[str]:
    return [sys.executable, "-m", "zakura", "chaos", "run", *args]


def node_pids(data_dir: Path) -> list[int]:
    """Live processes whose command line names a node's data dir under ``data_dir`` (the
    node dirs are ``node-NN``; the tmux server's own command line names only ``data_dir``)."""
    out = subprocess.run(["pgrep", "-f", f"{data_dir}/node-"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.mark.timeout(180)
def test_console_shows_the_cluster_and_the_verdict_follows(term: Term, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    term.start(chaos_run("scenarios/partition-heal.toml", "--console", "--report", str(report)))
    wait_for("the Fleet view", lambda: "node-02" in term.screen(), 60, term)
    screen = term.screen()
    assert "node-00" in screen and "node-01" in screen
    wait_for("the verdict banner", lambda: "PASS; q quits" in term.screen(), 120, term)
    assert term.status() is None, "the console stays open after the scenario until q"
    term.tmux("send-keys", "-t", "t", "q")
    wait_for("the run to end", lambda: term.status() is not None, 30, term)
    assert term.status() == 0
    out = term.screen(history=True)
    assert "partition" in out and "healed every node" in out  # progress printed after the console
    assert "same_best_chain" in out and "PASS scenarios/partition-heal.toml" in out
    assert json.loads(report.read_text())["passed"] is True


@pytest.mark.timeout(180)
def test_quitting_the_console_early_stops_every_node(term: Term, tmp_path: Path) -> None:
    data = tmp_path / "nodes"
    term.start(chaos_run("scenarios/peer-churn.toml", "--console", "--data-dir", str(data)))
    wait_for("the first fault", lambda: "faults: 1 of" in term.screen(), 90, term)
    assert node_pids(data), "the cluster's nodes run while the console is open"
    term.tmux("send-keys", "-t", "t", "q")
    wait_for("the run to end", lambda: term.status() is not None, 30, term)
    assert term.status() == 130
    assert "closed before the scenario ended" in term.screen(history=True)
    assert node_pids(data) == []


def test_console_without_a_terminal_is_refused_before_anything_starts(tmp_path: Path) -> None:
    done = subprocess.run(
        chaos_run("scenarios/partition-heal.toml", "--console", "--data-dir", str(tmp_path / "d")),
        capture_output=True, text=True, timeout=30, cwd=ROOT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--console" in done.stderr and "terminal" in done.stderr
    assert not (tmp_path / "d").exists()
