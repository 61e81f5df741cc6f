"""Helpers for the SSH tests: real ``zakura node`` processes, real OpenSSH, real tmux.

Keys are made with ``ssh-keygen``; every ``ssh`` call uses only the key the test names
(``IdentitiesOnly``), never the user's agent or config, and trusts the node's host key on
first use into a known_hosts file of the test's own. tmux runs on a socket of the test's own
(``-L``), so a developer's tmux is never touched. Waits poll a condition with a deadline; the
deadlines only stop a broken run from hanging (no timing is asserted).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from node_core.api.tokens import TokenStore
from node_core.control import Role
from zakura.node_cmd import parse_start_line

ZAKURA = Path(sys.executable).with_name("zakura")
SSH = shutil.which("ssh")
TMUX = shutil.which("tmux")
START_SECS = 30.0
WAIT_SECS = 30.0


def wait_until(cond: Callable[[], object], what: str, timeout: float = WAIT_SECS) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def make_key(directory: Path, name: str) -> Path:
    """An Ed25519 key pair made by ssh-keygen; returns the private key's path."""
    path = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True
    )
    return path


def public_line(key: Path) -> str:
    return key.with_suffix(".pub").read_text().strip()


def fingerprint(key: Path) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(key.with_suffix(".pub"))],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()[1]


@dataclass
class Node:
    """One ``zakura node`` child."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    label: str
    listen: str
    api: str
    ssh_port: int
    token: str
    known_hosts: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return (self.data_dir / "node.log").read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log)"

    def journal(self, since: int = 0) -> list[dict[str, object]]:
        """The node's journal through its API (operator token made before start)."""
        import urllib.request

        req = urllib.request.Request(
            f"http://{self.api}/api/v1/journal?since={since}&limit=5000",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            rows: list[dict[str, object]] = orjson.loads(resp.read())["rows"]
        return rows

    def snapshot(self) -> dict[str, object]:
        import urllib.request

        req = urllib.request.Request(
            f"http://{self.api}/api/v1/snapshot",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            snap: dict[str, object] = orjson.loads(resp.read())
        return snap

    def children(self) -> list[int]:
        """Live processes whose parent is this node (its SSH consoles)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == self.process.pid:
                found.append(int(entry.name))
        return found


@dataclass
class Nodes:
    """Every node a test started, stopped at the end whatever happened."""

    all: list[Node] = field(default_factory=list)

    def start(self, data_dir: Path, *extra: str) -> Node:
        data_dir.mkdir(parents=True, exist_ok=True)
        store = TokenStore(data_dir)
        if any(t.name == "test" for t in store.tokens):
            store.revoke("test")
        token = store.create("test", Role.OPERATOR)
        log = (data_dir / "node.log").open("ab")
        proc = subprocess.Popen(
            [str(ZAKURA), "node", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir),
             "--api", "127.0.0.1:0", "--log-level", "info", *extra],
            stdout=subprocess.PIPE, stderr=log,
        )  # fmt: skip
        log.close()
        assert proc.stdout is not None
        line = _readline(proc, START_SECS).decode()
        start = parse_start_line(line)
        if start is None or start.api is None:
            proc.kill()
            tail = (data_dir / "node.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"no start line from {data_dir} (got {line!r}):\n{tail}")
        port = int(start.ssh.rsplit(":", 1)[1]) if start.ssh else 0
        node = Node(
            proc, data_dir, start.label, start.listen, start.api, port, token,
            data_dir / "known_hosts",
        )  # fmt: skip
        self.all.append(node)
        return node

    def stop_all(self) -> None:
        for node in self.all:
            node.stop()


def _readline(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    import selectors

    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        proc.kill()
        raise AssertionError(f"no start line within {timeout:g} s")
    return proc.stdout.readline()


def ssh_argv(
    node: Node, key: Path | None, *command: str, user: str = "tester", tty: bool = False
) -> list[str]:
    assert SSH is not None
    argv = [
        SSH, *(["-t"] if tty else []), "-p", str(node.ssh_port),
        "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "IdentityAgent=none",
        "-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={node.known_hosts}",
        "-o", "LogLevel=ERROR", "-F", "/dev/null",
    ]  # fmt: skip
    if key is not None:
        argv += ["-i", str(key)]
    return [*argv, f"{user}@127.0.0.1", *command]


def ssh(
    node: Node, key: Path | None, *command: str, user: str = "tester", options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    argv = ssh_argv(node, key, *command, user=user)
    argv[1:1] = [o for opt in options for o in ("-o", opt)]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


@dataclass
class Tmux:
    """A tmux server of the test's own; each window is one interactive ssh."""

    socket: str = field(default_factory=lambda: f"zk-ssh-test-{os.getpid()}")

    def run(self, *args: str) -> str:
        assert TMUX is not None
        out = subprocess.run(
            [TMUX, "-L", self.socket, *args], capture_output=True, text=True, timeout=20
        )
        return out.stdout

    def new(self, name: str, argv: list[str], cols: int = 100, rows: int = 30) -> None:
        import shlex

        self.run("new-session", "-d", "-s", name, "-x", str(cols), "-y", str(rows),
                 shlex.join(argv))  # fmt: skip
        self.run("set-option", "-t", name, "remain-on-exit", "on")

    def screen(self, name: str, history: bool = False) -> str:
        return self.run("capture-pane", "-t", name, "-p", *(("-S", "-100") if history else ()))

    def keys(self, name: str, *keys: str) -> None:
        self.run("send-keys", "-t", name, *keys)

    def pane_dead(self, name: str) -> bool:
        return self.run("display-message", "-t", name, "-p", "#{pane_dead}").strip() == "1"

    def kill(self, name: str) -> None:
        self.run("kill-session", "-t", name)

    def close(self) -> None:
        self.run("kill-server")


@contextmanager
def tmux() -> Iterator[Tmux]:
    t = Tmux()
    try:
        yield t
    finally:
        t.close()


def is_zombie_or_gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def gone(pid: int) -> bool:
    """Reaped: no /proc entry at all (a zombie still has one)."""
    return not Path(f"/proc/{pid}").exists()
