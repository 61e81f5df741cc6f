"""The ``zakura`` command line as operators use it: real processes, real sockets."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from zakura.args import DEMO_BLOCKS, DEMO_MINE_INTERVAL, parse_hostport
from zakura.cli import build_parser
from zakura.node_cmd import format_start_line, node_config_from_args, parse_start_line

ZAKURA = [sys.executable, "-m", "zakura"]
SCRIPT = Path(sys.executable).parent / "zakura"


def run(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ZAKURA, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other program is listening on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


# ---------------------------------------------------------------------- --help
HELP_CASES = {
    (): ["node", "testnet", "demo", "example"],
    ("node",): [
        "--listen",
        "--data-dir",
        "--bootstrap",
        "--api",
        "--allow-faults",
        "--trace-dir",
        "--target-peers",
        "--network",
        "--mine-interval",
        "--idle-timeout",
        "--max-connections",
        "--max-connections-per-ip",
        "--max-pending-handshakes",
        "--loop",
        "--log-level",
    ],
    ("testnet",): [
        "--nodes",
        "--base-port",
        "--api-base-port",
        "--data-dir",
        "--target-peers",
        "--allow-faults",
        "--trace-dir",
        "--mine-interval",
        "--log-level",
    ],
    ("demo",): [
        "--peers",
        "--data-dir",
        "--duration",
        "--blocks",
        "--mine-interval",
        "--log-level",
    ],
}


@pytest.mark.parametrize("level", list(HELP_CASES), ids=lambda lv: " ".join(lv) or "zakura")
def test_help_teaches_every_flag(level: tuple[str, ...]) -> None:
    result = run(*level, "--help")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "example" in out
    for flag in HELP_CASES[level]:
        assert flag in out, f"{flag} missing from help of {level}"
    if level:
        # Every option line states its default (or that it is required).
        options = out.split("options:", 1)[1].split("example", 1)[0]
        entries = re.split(r"\n  (?=-)", options)
        for entry in entries[1:]:
            if entry.startswith("-h"):
                continue
            assert "default" in entry or "required" in entry, entry


def test_console_script_is_installed_and_matches_module() -> None:
    if not SCRIPT.exists():
        pytest.skip("console script not installed in this environment")
    result = subprocess.run(
        [str(SCRIPT), "testnet", "--help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    assert result.stdout == run("testnet", "--help").stdout


def test_python_m_node_core_points_to_the_command() -> None:
    """node_core is the library under the command line: it only says where the command is."""
    result = subprocess.run(
        [sys.executable, "-m", "node_core", "node", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert "python -m zakura" in result.stderr and len(result.stderr.splitlines()) == 1


# ---------------------------------------------------------------------- bad input
def assert_usage_error(result: subprocess.CompletedProcess[str], flag: str, *words: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [ln for ln in result.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1, result.stderr
    assert flag in errors[0], errors[0]
    for word in words:
        assert word in errors[0], errors[0]


def test_bad_listen_names_the_flag(tmp_path: Path) -> None:
    result = run("node", "--listen", "nonsense", "--data-dir", str(tmp_path))
    assert_usage_error(result, "--listen", "HOST:PORT", "nonsense")


@pytest.mark.parametrize(
    ("args", "flag", "word"),
    [
        (["--listen", "127.0.0.1:70000"], "--listen", "out of range"),
        (["--listen", "127.0.0.1:x"], "--listen", "not a number"),
        (["--listen", ":9000"], "--listen", "missing host"),
        (["--listen", "127.0.0.1:0", "--bootstrap", "127.0.0.1:0"], "--bootstrap", "range"),
        (["--listen", "127.0.0.1:0", "--api", "localhost"], "--api", "HOST:PORT or PORT"),
        (["--listen", "127.0.0.1:0", "--target-peers", "-1"], "--target-peers", "at least 0"),
        (["--listen", "127.0.0.1:0", "--network", "moon"], "--network", "invalid choice"),
    ],
)
def test_malformed_flags(tmp_path: Path, args: list[str], flag: str, word: str) -> None:
    assert_usage_error(run("node", *args, "--data-dir", str(tmp_path)), flag, word)


@pytest.mark.parametrize(
    ("value", "word"), [("0", "must be positive"), ("-1", "must be positive"), ("soon", "seconds")]
)
def test_node_mine_interval_must_be_positive(tmp_path: Path, value: str, word: str) -> None:
    result = run("node", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path),
                 "--mine-interval", value)  # fmt: skip
    assert_usage_error(result, "--mine-interval", word, repr(value))
    assert not (tmp_path / "node_key").exists()  # refused before anything started


@pytest.mark.parametrize(
    ("value", "word"),
    [("0.5", "from 1 to 600 seconds"), ("601", "from 1 to 600 seconds"), ("soon", "seconds")],
)
def test_node_idle_timeout_is_checked_against_the_handshake_bounds(
    tmp_path: Path, value: str, word: str
) -> None:
    result = run("node", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path),
                 "--idle-timeout", value)  # fmt: skip
    assert_usage_error(result, "--idle-timeout", word, repr(value))
    assert not (tmp_path / "node_key").exists()  # refused before anything started


def test_node_idle_timeout_help_and_config() -> None:
    flat = " ".join(run("node", "--help").stdout.split())
    assert (
        "--idle-timeout SECONDS close a connection that received no record (data or keepalive "
        "PING) for this many seconds; offered in the handshake, the smaller of both sides' "
        "values applies"
    ) in flat
    assert "1 to 600 (default: 150)" in flat
    base = ["node", "--listen", "127.0.0.1:0", "--data-dir", "unused"]
    default = node_config_from_args(build_parser().parse_args(base)).transport
    assert (default.limits.idle_timeout_millis, default.keepalive_interval) == (150_000, 10.0)
    short = node_config_from_args(build_parser().parse_args([*base, "--idle-timeout", "3"]))
    assert short.transport.limits.idle_timeout_millis == 3000
    assert short.transport.keepalive_interval == 1.0  # a third: below the timeout


def test_node_admission_caps_are_flags_with_safe_defaults() -> None:
    flat = " ".join(run("node", "--help").stdout.split())
    assert "--max-connections N refuse an inbound peer once N connections are up" in flat
    assert "(default: 64)" in flat and "(default: 32)" in flat and "(default: 16)" in flat
    base = ["node", "--listen", "127.0.0.1:0", "--data-dir", "unused"]
    default = node_config_from_args(build_parser().parse_args(base)).transport
    caps = ("max_connections", "max_connections_per_ip", "max_pending_handshakes")
    assert tuple(getattr(default, c) for c in caps) == (64, 32, 16)
    raised = node_config_from_args(
        build_parser().parse_args(
            [*base, "--max-connections", "1100", "--max-connections-per-ip", "1050",
             "--max-pending-handshakes", "64", "--idle-timeout", "3"]
        )
    ).transport  # fmt: skip
    assert tuple(getattr(raised, c) for c in caps) == (1100, 1050, 64)
    assert raised.limits.idle_timeout_millis == 3000  # the other settings are kept


@pytest.mark.parametrize("value", ["0", "100001", "many"])
def test_node_admission_caps_are_bounded(tmp_path: Path, value: str) -> None:
    result = run("node", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path),
                 "--max-connections", value)  # fmt: skip
    assert result.returncode == 2
    assert "--max-connections" in result.stderr
    assert not (tmp_path / "node_key").exists()  # refused before anything started


def test_node_loop_flag() -> None:
    from console.usage import UsageError
    from zakura.node_cmd import loop_factory

    assert loop_factory("asyncio") is None
    try:
        import uvloop  # noqa: F401
    except ImportError:
        with pytest.raises(UsageError, match=r"--loop: uvloop is not installed"):
            loop_factory("uvloop")
        return
    factory = loop_factory("uvloop")
    assert factory is not None
    loop = factory()
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()


def test_node_runs_on_uvloop_and_stops_cleanly(tmp_path: Path) -> None:
    pytest.importorskip("uvloop")
    proc = subprocess.Popen(
        [*ZAKURA, "node", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path),
         "--loop", "uvloop", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert parse_start_line(proc.stdout.readline()) is not None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_node_mine_help_teaches_what_it_does() -> None:
    flat = " ".join(run("node", "--help").stdout.split())
    assert (
        "--mine-interval S mine a block on our tip every S seconds and announce it with "
        "NewBlock; off by default"
    ) in flat


def test_listen_port_in_use(tmp_path: Path, busy_port: int) -> None:
    result = run("node", "--listen", f"127.0.0.1:{busy_port}", "--data-dir", str(tmp_path))
    assert_usage_error(result, "--listen", "already in use", str(busy_port))


def test_api_port_in_use(tmp_path: Path, busy_port: int) -> None:
    result = run(
        "node", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path), "--api", str(busy_port)
    )
    assert_usage_error(result, "--api", "already in use")


def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run("node", "--listen", "127.0.0.1:0", "--data-dir", str(blocker / "sub"))
    assert_usage_error(result, "--data-dir", "not a writable directory")


def test_exposed_identity_key_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "node_key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o644)
    result = run("node", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path))
    assert_usage_error(result, "--data-dir", "chmod 600")


def test_trace_dir_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run(
        "node", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d"),
        "--trace-dir", str(blocker),
    )  # fmt: skip
    assert_usage_error(result, "--trace-dir")


# ---------------------------------------------------------------------- parsing units
def test_parse_hostport_shapes() -> None:
    assert parse_hostport("127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert parse_hostport("[::1]:9000") == ("::1", 9000)
    assert parse_hostport("localhost:0") == ("localhost", 0)
    assert parse_hostport("9100", default_host="127.0.0.1") == ("127.0.0.1", 9100)
    for bad in ("9100", "::1:9000", "[::1]", "host:", "host:65536"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_hostport(bad)


def test_node_mine_interval_reaches_the_config(tmp_path: Path) -> None:
    base = ["node", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path)]
    assert node_config_from_args(build_parser().parse_args(base)).mine_interval is None
    args = build_parser().parse_args([*base, "--mine-interval", "2.5", "--blocks", "10"])
    config = node_config_from_args(args)
    assert (config.mine_interval, config.blocks) == (2.5, 10)


def test_headers_only_node_runs_no_block_sync(tmp_path: Path) -> None:
    from node_core.node import Node

    base = ["node", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path)]
    assert node_config_from_args(build_parser().parse_args(base)).sync_blocks
    config = node_config_from_args(build_parser().parse_args([*base, "--headers-only"]))
    assert not config.sync_blocks
    node = Node(config)
    assert [svc.name for svc in node.registry.services] == ["discovery", "header_sync"]


@pytest.mark.parametrize("command", ["console", "demo"])
def test_embedded_testnet_mines_by_default_and_zero_turns_it_off(command: str) -> None:
    parser = build_parser()
    args = parser.parse_args([command])
    assert (args.blocks, args.mine_interval) == (DEMO_BLOCKS, DEMO_MINE_INTERVAL) == (5000, 5.0)
    args = parser.parse_args([command, "--blocks", "0", "--mine-interval", "0"])
    assert (args.blocks, args.mine_interval) == (0, None)
    args = parser.parse_args([command, "--blocks", "20000", "--mine-interval", "0.5"])
    assert (args.blocks, args.mine_interval) == (20000, 0.5)


@pytest.mark.parametrize(
    ("args", "flag", "word"),
    [
        (["--mine-interval", "-1"], "--mine-interval", "0 for off"),
        (["--mine-interval", "often"], "--mine-interval", "0 = off"),
        (["--blocks", "-1"], "--blocks", "at least 0"),
        (["--blocks", "many"], "--blocks", "whole number"),
    ],
)
def test_demo_chain_flags_name_the_flag(args: list[str], flag: str, word: str) -> None:
    assert_usage_error(run("demo", *args), flag, word)


def test_start_line_round_trip() -> None:
    line = format_start_line("peer:0123456789abcdef", "127.0.0.1:1", None)
    parsed = parse_start_line(line)
    assert parsed is not None
    assert (parsed.label, parsed.listen, parsed.api) == (
        "peer:0123456789abcdef",
        "127.0.0.1:1",
        None,
    )
    assert parse_start_line("something else") is None


# ---------------------------------------------------------------------- a running node
async def read_start_line(proc: asyncio.subprocess.Process, timeout: float = 20.0) -> str:
    assert proc.stdout is not None
    async with asyncio.timeout(timeout):
        return (await proc.stdout.readline()).decode()


async def wait_exit(proc: asyncio.subprocess.Process, timeout: float) -> int:
    async with asyncio.timeout(timeout):
        return await proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_node_serves_api_and_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    proc = await asyncio.create_subprocess_exec(
        *ZAKURA, "node", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path),
        "--api", "0", "--log-level", "warning",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        line = await read_start_line(proc)
        ready = parse_start_line(line)
        assert ready is not None, line
        assert ready.label.startswith("peer:") and len(ready.label) == 5 + 16
        assert ready.listen.startswith("127.0.0.1:") and not ready.listen.endswith(":0")
        assert ready.api is not None and ready.api.startswith("127.0.0.1:")  # bare port: loopback
        async with aiohttp.ClientSession() as http, http.get(f"http://{ready.api}/healthz") as r:
            assert r.status == 200
            assert (await r.json())["label"] == ready.label
        proc.send_signal(sig)
        # The node stops by itself and cleanly: its exit is awaited as a condition (the
        # timeout only turns a hang into a failure; how fast it stops is not asserted).
        assert await wait_exit(proc, 60.0) == 0
        assert proc.stderr is not None
        assert b"Traceback" not in await proc.stderr.read()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# ---------------------------------------------------------------------- zakura demo
def test_demo_non_tty_shows_connected_peers(tmp_path: Path) -> None:
    result = subprocess.run(
        [*ZAKURA, "demo", "--duration", "3", "--peers", "3", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    counts = [
        (int(m.group(1)), int(m.group(2)))
        for m in re.finditer(r"peers (\d+)/(\d+) connected", result.stdout)
    ]
    assert counts, result.stdout
    assert max(c for c, _ in counts) >= 3, result.stdout
    assert {t for _, t in counts} == {3}
    # The last summary lists each peer with its running discovery routine.
    last = result.stdout.rsplit("peers ", 1)[1]
    assert len(re.findall(r"discovery ●\d+", last)) >= 3, last
    # The demo stopped (and reaped) its testnet: no process runs from its data dir any more.
    assert processes_mentioning(str(tmp_path)) == []


def test_demo_shows_our_node_syncing_and_following_the_miner(tmp_path: Path) -> None:
    """Node 0 starts with 300 blocks and mines every 0.3 s: our node's header tip, shown in
    the header line, gets to 300 and then past it (mined blocks reach us through NewBlock)."""
    result = subprocess.run(
        [*ZAKURA, "demo", "--duration", "5", "--peers", "2", "--data-dir", str(tmp_path),
         "--blocks", "300", "--mine-interval", "0.3"],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "node 0 pre-generates 300 blocks" in result.stdout
    tips = [
        int(m.group(1).replace(",", "")) for m in re.finditer(r"headers ([\d,]+)/", result.stdout)
    ]
    assert tips and tips == sorted(tips), result.stdout  # a header tip never goes back
    assert tips[-1] > 300, result.stdout
    assert processes_mentioning(str(tmp_path)) == []


def processes_mentioning(text: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmdline and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


async def test_demo_quits_on_ctrl_c(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *ZAKURA, "demo", "--peers", "2", "--data-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            while b"peers 2/2 connected" not in await proc.stdout.readline():
                pass
        assert processes_mentioning(str(tmp_path))  # the testnet children are running
        proc.send_signal(signal.SIGINT)
        assert await wait_exit(proc, 15.0) == 0
        assert processes_mentioning(str(tmp_path)) == []
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# ---------------------------------------------------------------------- shutdown safety net
async def test_leftover_task_that_swallows_one_cancel_is_finished() -> None:
    """The 3.11 ``wait_for`` race eats one cancellation; re-cancelling must still end the task."""
    from zakura.process import finish_leftover_tasks

    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed > 2:
                    raise

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    await finish_leftover_tasks(timeout=5.0)
    assert task.cancelled()
    assert swallowed == 3


def test_task_that_never_stops_cannot_hang_the_process() -> None:
    code = (
        "import asyncio\n"
        "from zakura.process import finish_leftover_tasks\n"
        "async def immortal():\n"
        "    while True:\n"
        "        try:\n"
        "            await asyncio.Event().wait()\n"
        "        except asyncio.CancelledError:\n"
        "            pass\n"
        "async def main():\n"
        "    asyncio.create_task(immortal(), name='immortal')\n"
        "    await asyncio.sleep(0)\n"
        "    await finish_leftover_tasks(timeout=0.5)\n"
        "asyncio.run(main())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 1
    assert "immortal" in result.stderr
