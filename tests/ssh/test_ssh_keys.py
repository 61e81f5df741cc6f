"""The key file's rules, the failed-login window, the host key, and ``--ssh`` flag errors."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import asyncssh
import pytest
from sshkit import SSH, ZAKURA, Nodes, make_key, public_line

from node_core.control import Role
from node_core.ssh.authkeys import ENTRY_OPTION, AuthorizedKeys, parse
from node_core.ssh.hostkey import HOST_KEY_FILE, HostKeyError, load_or_create
from node_core.ssh.limits import FailedLogins


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keys")
    return {name: make_key(d, name) for name in ("a", "b", "c")}


def test_roles_default_to_viewer_and_bad_lines_are_reported(keys: dict[str, Path]) -> None:
    text = (
        f"zakura-role=operator {public_line(keys['a'])}\n"
        f"{public_line(keys['b'])}\n"
        "\n# a comment\n"
        f"zakura-role=admin {public_line(keys['c'])}\n"
        "ssh-ed25519 not-base64 broken\n"
    )
    parsed = parse(text, "keys")
    roles = [e.role for e in parsed.entries]
    assert roles == [Role.OPERATOR, Role.VIEWER]
    assert [e.line_no for e in parsed.entries] == [1, 2]
    assert parsed.entries[1].comment == "b"
    assert len(parsed.problems) == 2
    assert parsed.problems[0].startswith("keys:5: skipped (zakura-role must appear once")
    assert parsed.problems[1].startswith("keys:6: skipped")
    fp = asyncssh.read_public_key(keys["a"].with_suffix(".pub")).get_fingerprint("sha256")
    assert parsed.entries[0].fingerprint == fp


def test_the_matched_entry_is_found_again_and_from_is_kept(keys: dict[str, Path]) -> None:
    parsed = parse(
        f'from="10.1.2.3",zakura-role=operator {public_line(keys["a"])}\n'
        f"{public_line(keys['b'])}\n",
        "keys",
    )
    assert parsed.matcher is not None
    key_a = asyncssh.read_public_key(keys["a"].with_suffix(".pub"))
    key_b = asyncssh.read_public_key(keys["b"].with_suffix(".pub"))
    assert parsed.matcher.validate(key_a, "", "127.0.0.1") is None  # outside from=
    options = parsed.matcher.validate(key_a, "", "10.1.2.3")
    assert options is not None
    entry = parsed.entry(options[ENTRY_OPTION])
    assert entry is not None and entry.role is Role.OPERATOR
    options = parsed.matcher.validate(key_b, "", "127.0.0.1")
    assert options is not None
    entry = parsed.entry(options[ENTRY_OPTION])
    assert entry is not None and entry.role is Role.VIEWER and entry.line_no == 2
    assert parsed.entry(["7"]) is None and parsed.entry("0") is None


def test_the_file_is_reread_only_when_it_changes_and_a_deleted_file_lets_nobody_in(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    path = tmp_path / "authorized_keys"
    path.write_text(public_line(keys["a"]) + "\n")
    ak = AuthorizedKeys(path)
    first = ak.load()
    assert ak.refresh() is first  # unchanged: the same reading
    path.write_text(public_line(keys["a"]) + "\n" + public_line(keys["b"]) + "\n")
    assert len(ak.refresh().entries) == 2
    path.unlink()
    assert ak.refresh().entries == () and ak.refresh().matcher is None


def test_failed_logins_are_limited_per_address_in_a_window() -> None:
    limit = FailedLogins(limit=3, window=60.0)
    for t in (0.0, 1.0, 2.0):
        assert not limit.blocked("10.0.0.1", t)
        limit.failed("10.0.0.1", t)
    assert limit.blocked("10.0.0.1", 3.0)
    assert not limit.blocked("10.0.0.2", 3.0)  # per address
    assert not limit.blocked("10.0.0.1", 60.5)  # the first failure aged out
    limit.failed("10.0.0.1", 60.6)  # with the two still inside the window: three again
    assert limit.blocked("10.0.0.1", 60.7)
    limit.succeeded("10.0.0.1")
    assert not limit.blocked("10.0.0.1", 60.7)


def test_the_host_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    first = load_or_create(tmp_path)
    assert first.created
    assert (os.stat(tmp_path / HOST_KEY_FILE).st_mode & 0o777) == 0o600
    again = load_or_create(tmp_path)
    assert not again.created and again.fingerprint == first.fingerprint
    os.chmod(tmp_path / HOST_KEY_FILE, 0o644)
    with pytest.raises(HostKeyError, match="readable by others"):
        load_or_create(tmp_path)


@pytest.mark.skipif(not ZAKURA.exists(), reason="the zakura script is not installed")
@pytest.mark.skipif(SSH is None, reason="the OpenSSH client (ssh) is not installed")
def test_the_host_key_survives_a_restart(tmp_path: Path, keys: dict[str, Path]) -> None:
    path = tmp_path / "authorized_keys"
    path.write_text(public_line(keys["a"]) + "\n")
    nodes = Nodes()

    def host_key() -> str:
        node = nodes.start(tmp_path / "n", "--ssh", "127.0.0.1:0", "--ssh-authorized-keys",
                           str(path))  # fmt: skip
        try:
            out = subprocess.run(
                ["ssh-keyscan", "-t", "ed25519", "-p", str(node.ssh_port), "127.0.0.1"],
                capture_output=True, text=True, timeout=30, check=True,
            )  # fmt: skip
            return out.stdout.split(None, 1)[1].strip()
        finally:
            node.stop()

    try:
        assert host_key() == host_key()
    finally:
        nodes.stop_all()


@pytest.mark.skipif(not ZAKURA.exists(), reason="the zakura script is not installed")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ssh", "127.0.0.1:0"], "--ssh: needs --ssh-authorized-keys FILE"),
        (["--ssh-authorized-keys", "k"], "--ssh-authorized-keys: needs --ssh HOST:PORT"),
        (["--ssh", "127.0.0.1:0", "--ssh-authorized-keys", "missing"], "missing: no such file"),
        (["--ssh", "127.0.0.1:0", "--ssh-authorized-keys", "EMPTY"], "has no usable key"),
    ],
)
def test_ssh_flag_errors_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "empty").write_text("# nobody yet\n")
    args = [str(tmp_path / "empty") if a == "EMPTY" else a for a in args]
    out = subprocess.run(
        [str(ZAKURA), "node", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d"), *args],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_a_host_key_that_is_not_a_key_is_refused(tmp_path: Path) -> None:
    fd = os.open(tmp_path / HOST_KEY_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"garbage")
    os.close(fd)
    with pytest.raises(HostKeyError, match="not an SSH private key"):
        load_or_create(tmp_path)
