"""The console over SSH: the real OpenSSH client in tmux against a real node.

Each session is a ``ssh -t`` in a tmux window of the test's own tmux server; the test reads the
screen with ``capture-pane`` and types with ``send-keys``, as a user would. The console runs
in a child of the node; the test finds it by parent pid and checks it is gone (reaped, not a
zombie) once ssh closes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sshkit import (
    SSH,
    TMUX,
    ZAKURA,
    Node,
    Nodes,
    Tmux,
    fingerprint,
    gone,
    make_key,
    public_line,
    ssh_argv,
    tmux,
    wait_until,
)

pytestmark = [
    pytest.mark.skipif(SSH is None, reason="the OpenSSH client (ssh) is not installed"),
    pytest.mark.skipif(TMUX is None, reason="tmux is not installed"),
    pytest.mark.skipif(not ZAKURA.exists(), reason="the zakura script is not installed"),
]

#: The console starts a Python process and imports Textual: allow a slow machine.
APPEAR_SECS = 45.0


@dataclass
class Rig:
    a: Node
    b: Node
    operator: Path
    viewer: Path
    tmux: Tmux


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    root = tmp_path_factory.mktemp("sshconsole")
    operator, viewer = make_key(root, "operator"), make_key(root, "viewer")
    keys_file = root / "authorized_keys"
    keys_file.write_text(f"zakura-role=operator {public_line(operator)}\n{public_line(viewer)}\n")
    nodes = Nodes()
    try:
        with tmux() as t:
            a = nodes.start(
                root / "a", "--allow-faults", "--ssh", "127.0.0.1:0",
                "--ssh-authorized-keys", str(keys_file), "--ssh-max-sessions", "2",
            )  # fmt: skip
            b = nodes.start(root / "b", "--bootstrap", a.listen)
            wait_until(
                lambda: any(p["label"] == b.label for p in a.snapshot()["peers"]),  # type: ignore[attr-defined]
                "B on A",
            )
            yield Rig(a, b, operator, viewer, t)
    finally:
        nodes.stop_all()


def open_console(rig: Rig, name: str, key: Path, cols: int = 100, rows: int = 30) -> int:
    """An interactive ssh in tmux window ``name``; returns the console child's pid."""
    before = set(rig.a.children())
    rig.tmux.new(name, ssh_argv(rig.a, key, user=name, tty=True), cols, rows)
    wait_until(lambda: "Overview" in rig.tmux.screen(name), f"the console in {name}", APPEAR_SECS)
    new = set(rig.a.children()) - before
    assert len(new) == 1, f"expected one console child, found {new}"
    return new.pop()


def close_console(rig: Rig, name: str, pid: int) -> None:
    rig.tmux.kill(name)  # the terminal goes away: ssh closes the connection
    wait_until(lambda: gone(pid), f"console pid {pid} to exit and be reaped")


def test_an_operator_disconnects_a_peer_from_the_console(rig: Rig) -> None:
    pid = open_console(rig, "op", rig.operator)
    try:
        screen = rig.tmux.screen("op")
        assert "READ-ONLY" not in screen
        rig.tmux.keys("op", "2")
        wait_until(lambda: rig.b.label[5:] in rig.tmux.screen("op"), "B in the Peers view")
        before = int(str(rig.a.journal()[-1]["seq"]))
        rig.tmux.keys("op", "d")
        wait_until(lambda: "Confirm" in rig.tmux.screen("op"), "the confirmation")
        rig.tmux.keys("op", "y")

        def fault_rows() -> list[dict[str, object]]:
            return [
                r for r in rig.a.journal(before)
                if (r["table"], r["event"]) == ("fault", "injected")
            ]  # fmt: skip

        wait_until(fault_rows, "the disconnect in A's journal")
        fields = fault_rows()[0]["fields"]
        assert isinstance(fields, dict)
        assert fields["by"] == f"ssh:op:{fingerprint(rig.operator)}"
        assert fields["role"] == "operator" and fields["kind"] == "disconnect"
        assert fault_rows()[0]["peer"] == rig.b.label
    finally:
        close_console(rig, "op", pid)
    # The session's token died with it.
    rows = [r for r in rig.a.journal() if (r["table"], r["event"]) == ("ssh", "logout")]
    assert any(r["fields"]["user"] == "op" for r in rows)  # type: ignore[index]


def test_a_viewer_key_gets_a_read_only_console(rig: Rig) -> None:
    pid = open_console(rig, "viewer", rig.viewer)
    try:
        wait_until(lambda: "READ-ONLY" in rig.tmux.screen("viewer"), "READ-ONLY in the status bar")
        before = int(str(rig.a.journal()[-1]["seq"]))
        rig.tmux.keys("viewer", "2")
        wait_until(lambda: rig.b.label[5:] in rig.tmux.screen("viewer"), "B in the Peers view")
        rig.tmux.keys("viewer", "d")
        wait_until(
            lambda: (
                re.search(r"read.only|viewer", rig.tmux.screen("viewer"), re.I)
                and "Confirm" not in rig.tmux.screen("viewer")
            ),
            "the refusal",
        )
        assert not [r for r in rig.a.journal(before) if r["table"] == "fault"]
    finally:
        close_console(rig, "viewer", pid)


def test_resizing_the_terminal_relays_the_console_out(rig: Rig) -> None:
    pid = open_console(rig, "resize", rig.viewer, cols=120, rows=35)
    try:

        def rule_width() -> int:
            """Width of the journal panel's top edge (boxed or a rule, it spans the screen)."""
            lines = rig.tmux.screen("resize").splitlines()
            edges = [line.rstrip() for line in lines if re.match(r"[╭─]+ ?journal", line)]
            return len(edges[0]) if edges else 0

        wait_until(lambda: rule_width() == 120, "a 120-column layout")
        rig.tmux.run("resize-window", "-t", "resize", "-x", "80", "-y", "24")
        wait_until(lambda: rule_width() == 80, "the console laid out again at 80 columns")
        assert len(rig.tmux.screen("resize").splitlines()) == 24
    finally:
        close_console(rig, "resize", pid)


def test_sessions_past_the_cap_are_refused_with_a_message(rig: Rig) -> None:
    first = open_console(rig, "s1", rig.viewer)
    second = open_console(rig, "s2", rig.viewer)
    try:
        rig.tmux.new("s3", ssh_argv(rig.a, rig.viewer, user="s3", tty=True))
        wait_until(lambda: rig.tmux.pane_dead("s3"), "the third session to be closed")
        assert "2 console sessions are open, the most this node" in rig.tmux.screen("s3", True)
    finally:
        close_console(rig, "s1", first)
        close_console(rig, "s2", second)
    # A slot is free again.
    third = open_console(rig, "s4", rig.viewer)
    close_console(rig, "s4", third)


def test_quitting_the_console_ends_the_ssh_session(rig: Rig) -> None:
    pid = open_console(rig, "quit", rig.viewer)
    rig.tmux.keys("quit", "q")
    wait_until(lambda: rig.tmux.pane_dead("quit"), "ssh to exit after q")
    wait_until(lambda: gone(pid), "the console child to be reaped")
    rig.tmux.kill("quit")


def test_an_idle_session_is_ended_with_a_message(tmp_path: Path) -> None:
    key = make_key(tmp_path, "idle")
    keys_file = tmp_path / "authorized_keys"
    keys_file.write_text(public_line(key) + "\n")
    nodes = Nodes()
    try:
        with tmux() as t:
            node = nodes.start(
                tmp_path / "n", "--ssh", "127.0.0.1:0", "--ssh-authorized-keys", str(keys_file),
                "--ssh-idle-timeout", "2",
            )  # fmt: skip
            t.new("idle", ssh_argv(node, key, user="idle", tty=True))
            wait_until(lambda: t.pane_dead("idle"), "the idle session to be ended", APPEAR_SECS)
            assert "no input for 2 s: session closed" in t.screen("idle", True)
            wait_until(lambda: not node.children(), "the console child to be reaped")
            logout = [r for r in node.journal() if (r["table"], r["event"]) == ("ssh", "logout")]
            assert logout[-1]["fields"]["reason"] == "idle"  # type: ignore[index]
    finally:
        nodes.stop_all()
