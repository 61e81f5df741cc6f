"""SSH script commands and authentication, with the real OpenSSH client against real nodes.

One node A serves SSH (an operator key, a viewer key, a key limited by ``from=`` to an address
the test never uses); node B dials A, so there is a peer to act on.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from sshkit import (
    SSH,
    ZAKURA,
    Node,
    Nodes,
    fingerprint,
    make_key,
    public_line,
    ssh,
    ssh_argv,
    wait_until,
)

pytestmark = [
    pytest.mark.skipif(SSH is None, reason="the OpenSSH client (ssh) is not installed"),
    pytest.mark.skipif(not ZAKURA.exists(), reason="the zakura script is not installed"),
]


@dataclass
class Rig:
    a: Node
    b: Node
    operator: Path
    viewer: Path
    elsewhere: Path
    stranger: Path
    keys_file: Path


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    root = tmp_path_factory.mktemp("ssh")
    keys = root / "keys"
    keys.mkdir()
    operator, viewer = make_key(keys, "operator"), make_key(keys, "viewer")
    elsewhere, stranger = make_key(keys, "elsewhere"), make_key(keys, "stranger")
    keys_file = root / "authorized_keys"
    keys_file.write_text(
        "# the test's keys\n"
        f"zakura-role=operator {public_line(operator)}\n"
        f"{public_line(viewer)}\n"
        f'from="10.99.99.99",zakura-role=operator {public_line(elsewhere)}\n'
        "this line is not a key\n"
    )
    nodes = Nodes()
    try:
        a = nodes.start(
            root / "a", "--allow-faults", "--ssh", "127.0.0.1:0",
            "--ssh-authorized-keys", str(keys_file),
        )  # fmt: skip
        b = nodes.start(root / "b", "--bootstrap", a.listen)
        wait_until(lambda: any(p["label"] == b.label for p in a.snapshot()["peers"]), "B on A")
        yield Rig(a, b, operator, viewer, elsewhere, stranger, keys_file)
    finally:
        nodes.stop_all()


def test_whoami_names_the_key_and_its_role(rig: Rig) -> None:
    op = ssh(rig.a, rig.operator, "whoami", user="alice")
    assert op.returncode == 0, op.stderr
    assert op.stdout.split() == [
        f"ssh:alice:{fingerprint(rig.operator)}",
        "role=operator",
        f"node={rig.a.label}",
    ]
    viewer = ssh(rig.a, rig.viewer, "whoami", user="bob")
    assert viewer.returncode == 0, viewer.stderr
    assert "role=viewer" in viewer.stdout.split()


def test_an_unknown_key_is_denied_and_the_refusal_is_journaled(rig: Rig) -> None:
    out = ssh(rig.a, rig.stranger, "whoami", user="eve")
    assert out.returncode == 255
    assert "Permission denied (publickey)" in out.stderr
    assert out.stdout == ""

    def refused() -> list[dict[str, object]]:
        return [
            r for r in rig.a.journal()
            if (r["table"], r["event"]) == ("ssh", "refused")
            and r["fields"]["user"] == "eve"  # type: ignore[index]
        ]  # fmt: skip

    wait_until(refused, "the refusal in the journal")
    assert refused()[0]["fields"]["reason"] == "no authorized key"  # type: ignore[index]


def test_passwords_are_never_offered(rig: Rig) -> None:
    out = ssh(
        rig.a,
        None,
        "whoami",
        options=("PreferredAuthentications=password,keyboard-interactive",
                 "PubkeyAuthentication=no", "NumberOfPasswordPrompts=1"),
    )  # fmt: skip
    assert out.returncode == 255
    # The server lists what it accepts: only publickey.
    assert "Permission denied (publickey)" in out.stderr


def test_a_key_outside_its_from_restriction_is_refused(rig: Rig) -> None:
    out = ssh(rig.a, rig.elsewhere, "whoami")
    assert out.returncode == 255
    assert "Permission denied (publickey)" in out.stderr


def test_snapshot_is_json_of_this_node(rig: Rig) -> None:
    out = ssh(rig.a, rig.viewer, "snapshot")
    assert out.returncode == 0, out.stderr
    snap = orjson.loads(out.stdout)
    assert snap["node"]["label"] == rig.a.label
    assert rig.b.label in {p["label"] for p in snap["peers"]}


def test_peers_is_a_plain_table_with_the_peer(rig: Rig) -> None:
    out = ssh(rig.a, rig.viewer, "peers")
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    assert header.split()[:3] == ["LABEL", "DIR", "ADDR"]
    assert any(row.split()[0] == rig.b.label for row in rows)
    assert "\x1b" not in out.stdout  # plain text for scripts


def test_journal_follow_streams_rows_as_they_happen(rig: Rig) -> None:
    last = max(int(str(r["seq"])) for r in rig.a.journal())
    follow = subprocess.Popen(
        ssh_argv(rig.a, rig.viewer, "journal", "--follow", "--since", str(last)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert follow.stdout is not None
        # The follower's own login comes first: the stream is live.
        first = orjson.loads(follow.stdout.readline())
        assert (first["table"], first["event"]) == ("ssh", "login")
        assert first["seq"] > last
        # A row that happens after: another session's login, with its own user.
        assert ssh(rig.a, rig.operator, "whoami", user="later").returncode == 0
        while True:
            row = orjson.loads(follow.stdout.readline())
            if row["event"] == "login" and row["fields"]["user"] == "later":
                break
    finally:
        follow.terminate()
        follow.wait(10)
    # The server noticed the follower left.
    wait_until(
        lambda: any(
            r["event"] == "logout"
            and r["fields"]["user"] == "tester"  # type: ignore[index]
            and r["seq"] > first["seq"]  # type: ignore[operator]
            for r in rig.a.journal(last)
        ),
        "the follower's logout",
    )


def test_a_viewer_key_cannot_inject_a_fault(rig: Rig) -> None:
    before = rig.a.journal()
    out = ssh(rig.a, rig.viewer, "fault", "panic", rig.b.label, "service=discovery")
    assert out.returncode == 1
    assert "viewer" in out.stderr and "panic needs an operator" in out.stderr
    after = rig.a.journal(int(str(before[-1]["seq"])))
    assert not [r for r in after if r["table"] == "fault"]
    assert any(p["label"] == rig.b.label for p in rig.a.snapshot()["peers"])  # type: ignore[attr-defined]


def test_an_operator_key_disconnects_and_the_journal_names_the_key(rig: Rig) -> None:
    out = ssh(rig.a, rig.operator, "fault", "disconnect", rig.b.label, user="alice")
    assert out.returncode == 0, out.stderr
    fp = fingerprint(rig.operator)
    rows = [r for r in rig.a.journal() if (r["table"], r["event"]) == ("fault", "injected")]
    assert rows, "no fault row"
    fields = rows[-1]["fields"]
    assert isinstance(fields, dict)
    assert fields["by"] == f"ssh:alice:{fp}" and fields["role"] == "operator"
    # B redials (A is its bootstrap): the peer comes back for the other tests.
    wait_until(lambda: any(p["label"] == rig.b.label for p in rig.a.snapshot()["peers"]), "B back")


def test_bad_commands_get_usage_and_status_2(rig: Rig) -> None:
    out = ssh(rig.a, rig.operator, "bogus")
    assert out.returncode == 2
    assert "unknown command 'bogus'" in out.stderr and "usage: ssh NODE COMMAND" in out.stderr
    out = ssh(rig.a, rig.operator, "fault", "explode", rig.b.label)
    assert out.returncode == 2 and "unknown fault 'explode'" in out.stderr
    out = ssh(rig.a, rig.operator, "fault", "stall", rig.b.label, "seconds=-3")
    assert out.returncode == 2 and "seconds" in out.stderr


def test_a_console_needs_a_terminal(rig: Rig) -> None:
    out = ssh(rig.a, rig.viewer, options=("RequestTTY=no",))
    assert out.returncode == 2
    assert "no terminal" in out.stderr


def test_the_key_file_is_reread_when_it_changes(rig: Rig) -> None:
    assert ssh(rig.a, rig.stranger, "whoami").returncode == 255
    original = rig.keys_file.read_text()
    try:
        rig.keys_file.write_text(original + f"zakura-role=operator {public_line(rig.stranger)}\n")
        out = ssh(rig.a, rig.stranger, "whoami")
        assert out.returncode == 0, out.stderr
        assert "role=operator" in out.stdout
    finally:
        rig.keys_file.write_text(original)
    assert ssh(rig.a, rig.stranger, "whoami").returncode == 255


def test_logins_and_logouts_are_journaled_with_the_key(rig: Rig) -> None:
    before = int(str(rig.a.journal()[-1]["seq"]))
    assert ssh(rig.a, rig.viewer, "whoami", user="carol").returncode == 0
    rows = [r for r in rig.a.journal(before) if r["table"] == "ssh"]
    login = next(r for r in rows if r["event"] == "login")
    logout = next(r for r in rows if r["event"] == "logout")
    for row in (login, logout):
        fields = row["fields"]
        assert isinstance(fields, dict)
        assert fields["user"] == "carol" and fields["key"] == fingerprint(rig.viewer)
        assert fields["role"] == "viewer" and fields["remote"] == "127.0.0.1"
