"""``zakura console --ssh``: the console's own node serves SSH like ``zakura node --ssh`` does.

The real command runs in a tmux window of the test's own (a real terminal), the real OpenSSH
client logs in with an operator key: a script command answers from the console's node, an
interactive session shows the console, and quitting the local console stops everything,
SSH sessions included. Waits poll a condition with a deadline; no timing is asserted.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from sshkit import SSH, TMUX, ZAKURA, make_key, public_line, tmux, wait_until

from zakura.ssh_args import SSH_REFRESH

pytestmark = [
    pytest.mark.skipif(SSH is None, reason="the OpenSSH client (ssh) is not installed"),
    pytest.mark.skipif(TMUX is None, reason="tmux is not installed"),
    pytest.mark.skipif(not ZAKURA.exists(), reason="the zakura script is not installed"),
]

READY = re.compile(
    r"your node: zakura node ready: label=(\S+) listen=\S+ api=(\S+) ssh=127\.0\.0\.1:(\d+)"
)


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def ssh_argv(
    port: int, key: Path, known_hosts: Path, *command: str, tty: bool = False
) -> list[str]:
    assert SSH is not None
    return [
        SSH, *(["-t"] if tty else []), "-p", str(port),
        "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "IdentityAgent=none",
        "-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "LogLevel=ERROR", "-F", "/dev/null", "-i", str(key), "ops@127.0.0.1", *command,
    ]  # fmt: skip


def test_console_serves_its_node_over_ssh(tmp_path: Path) -> None:
    key = make_key(tmp_path, "op")
    keys = tmp_path / "authorized_keys"
    keys.write_text(f"zakura-role=operator {public_line(key)}\n")
    known = tmp_path / "known_hosts"
    data = tmp_path / "data"
    log = data / "console.log"
    argv = [str(ZAKURA), "console", "--peers", "1", "--blocks", "0", "--mine-interval", "0",
            "--data-dir", str(data), "--ssh", "0", "--ssh-authorized-keys", str(keys)]  # fmt: skip
    with tmux() as t:
        t.new("local", argv, cols=120, rows=40)

        def ready() -> re.Match[str] | None:
            return READY.search(log.read_text()) if log.exists() else None

        wait_until(ready, "the console's node to report its SSH address in console.log", 60)
        found = ready()
        assert found is not None
        label, api, port = found.group(1), found.group(2), int(found.group(3))
        wait_until(lambda: "ssh -p" in t.screen("local"), "the --ssh notification on screen")

        who = subprocess.run(ssh_argv(port, key, known, "whoami"), capture_output=True,
                             text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
        assert who.returncode == 0, who.stderr
        assert "role=operator" in who.stdout and f"node={label}" in who.stdout, who.stdout

        t.new("remote", ssh_argv(port, key, known, tty=True), cols=100, rows=30)
        wait_until(lambda: "Overview" in t.screen("remote"), "the console over SSH")
        assert "READ-ONLY" not in t.screen("remote")
        # The session's console: `zakura attach --refresh S URL` (--ssh-refresh's rate).
        consoles = processes_mentioning(f"attach --refresh {SSH_REFRESH:g} http://{api}")
        assert consoles, "no console process attached to the node's loopback API"

        t.keys("local", "q")
        wait_until(lambda: t.pane_dead("local"), "the local console to quit")
        wait_until(lambda: t.pane_dead("remote"), "the SSH session to end with the node")
    wait_until(
        lambda: not processes_mentioning(str(data)) and not processes_mentioning(api),
        "every process of the console and of its SSH session to be gone",
    )
