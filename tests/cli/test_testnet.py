"""Local testnets: the 8-node acceptance run, clean stops, and no orphans after SIGKILL.

Everything here is real: child processes, TCP on 127.0.0.1, the HTTP API. Waits poll a
condition against a deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
import tomllib
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zakura.testnet import (
    HOSTILE_LEAD_BLOCKS,
    FleetEntry,
    Testnet,
    TestnetError,
    format_fleet_toml,
    format_prometheus_targets,
    miner_summary,
    toml_string,
)

ZAKURA = [sys.executable, "-m", "zakura"]
ACCEPTANCE_NODES = 8
ACCEPTANCE_SECS = 20.0


# ---------------------------------------------------------------------- helpers
def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie counts as gone (it no longer runs any code)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def poll(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


def consecutive_free_ports(count: int, attempts: int = 50) -> int:
    """A base port P such that P..P+count-1 are all free right now (held, then released)."""
    for _ in range(attempts):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count > 65535:
            continue
        with ExitStack() as stack:
            try:
                for port in range(base, base + count):
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return base
    raise RuntimeError(f"no {count} consecutive free ports found")


@dataclass
class Row:
    index: int
    label: str
    listen: str
    api: str
    pid: int


async def read_table(proc: asyncio.subprocess.Process, nodes: int, timeout: float) -> list[Row]:
    """Read ``zakura testnet`` stdout until its table of ``nodes`` rows is complete."""
    assert proc.stdout is not None
    rows: list[Row] = []
    seen_header = False
    async with asyncio.timeout(timeout):
        while len(rows) < nodes:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise AssertionError(f"testnet exited early with {await proc.wait()}")
            fields = line.split()
            if fields[:5] == ["idx", "label", "listen", "api", "pid"]:
                seen_header = True
            elif seen_header and len(fields) == 5:
                rows.append(Row(int(fields[0]), fields[1], fields[2], fields[3], int(fields[4])))
    return rows


def listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def absolute(path: Path) -> Path:
    return path.resolve()


def token_of(node_dir: Path) -> str:
    """The operator token the testnet wrote for the node in ``node_dir``."""
    path = node_dir / "operator.token"
    assert path.stat().st_mode & 0o077 == 0, "the token file is readable by others"
    return path.read_text().strip()


async def fetch_snapshot(
    http: aiohttp.ClientSession, api: str, token: str
) -> dict[str, Any] | None:
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with http.get(f"http://{api}/api/v1/snapshot", headers=headers) as resp:
            if resp.status != 200:
                return None
            doc: dict[str, Any] = await resp.json()
            return doc
    except aiohttp.ClientError:
        return None


def converged(snap: dict[str, Any] | None) -> bool:
    """Acceptance condition for one node: peers listed, target reached, discovery everywhere."""
    if snap is None or not snap["peers"]:
        return False
    dialer = snap["dialer"]
    if not (dialer["reached"] and dialer["connected"] >= dialer["target"]):
        return False
    return all(any(r["service"] == "discovery" for r in p["routines"]) for p in snap["peers"])


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


# ---------------------------------------------------------------------- acceptance
async def test_acceptance_eight_node_testnet(tmp_path: Path) -> None:
    """`zakura testnet --nodes 8 --api-base-port P`: converged within 20 s, then SIGTERM."""
    api_base = consecutive_free_ports(ACCEPTANCE_NODES)
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *ZAKURA, "testnet", "--nodes", str(ACCEPTANCE_NODES), "--api-base-port", str(api_base),
        "--data-dir", str(tmp_path), "--log-level", "warning",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        rows = await read_table(proc, ACCEPTANCE_NODES, timeout=ACCEPTANCE_SECS)
        assert [r.index for r in rows] == list(range(ACCEPTANCE_NODES))
        assert [r.api for r in rows] == [
            f"127.0.0.1:{api_base + i}" for i in range(ACCEPTANCE_NODES)
        ]
        assert len({r.label for r in rows}) == ACCEPTANCE_NODES
        assert len({r.listen for r in rows}) == ACCEPTANCE_NODES
        assert all((tmp_path / f"node-{i:02d}" / "node_key").exists() for i in range(8))

        snaps: dict[int, dict[str, Any] | None] = {}
        async with aiohttp.ClientSession() as http:
            deadline = started + ACCEPTANCE_SECS
            while True:
                results = await asyncio.gather(
                    *(
                        fetch_snapshot(http, r.api, token_of(tmp_path / f"node-{r.index:02d}"))
                        for r in rows
                    )
                )
                snaps = dict(enumerate(results))
                if all(converged(s) for s in results):
                    break
                if time.monotonic() > deadline:
                    summary = {
                        i: None if s is None else (s["dialer"], len(s["peers"]))
                        for i, s in snaps.items()
                    }
                    raise AssertionError(f"not converged within 20 s: {summary}")
                await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
        print(f"\n8-node testnet converged {elapsed:.2f} s after launch")
        for i, snap in snaps.items():
            assert snap is not None
            assert snap["node"]["label"] == rows[i].label
            assert snap["node"]["listen"] == rows[i].listen
            own = {rows[i].label}
            assert {p["label"] for p in snap["peers"]} <= {r.label for r in rows} - own

        pids = [r.pid for r in rows]
        assert all(pid_alive(p) for p in pids)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await proc.wait() == 0
        await poll(lambda: not any(pid_alive(p) for p in pids), 5.0, "every child to exit")
    finally:
        await stop_process(proc)


async def test_children_die_when_testnet_is_killed(tmp_path: Path) -> None:
    """SIGKILL leaves no chance to clean up: PR_SET_PDEATHSIG must stop the children."""
    proc = await asyncio.create_subprocess_exec(
        *ZAKURA, "testnet", "--nodes", "3", "--data-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        rows = await read_table(proc, 3, timeout=30)
        pids = [r.pid for r in rows]
        assert all(pid_alive(p) for p in pids)
        # No API, so no fleet file and no Prometheus targets.
        assert listing(tmp_path) == ["node-00", "node-01", "node-02"]
        os.kill(proc.pid, signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
        await poll(lambda: not any(pid_alive(p) for p in pids), 10.0, "orphans to exit")
    finally:
        await stop_process(proc)
    # They got SIGTERM, so they stopped cleanly: each logged its orderly shutdown.
    for i in range(3):
        log = (tmp_path / f"node-{i:02d}" / "node.log").read_text()
        assert "signal received, stopping node" in log, log[-2000:]


# ---------------------------------------------------------------------- fleet and Prometheus files
async def read_lines_until(
    proc: asyncio.subprocess.Process, prefix: str, timeout: float
) -> list[str]:
    """Read stdout lines up to and including the first that starts with ``prefix``."""
    assert proc.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(timeout):
        while not (lines and lines[-1].startswith(prefix)):
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise AssertionError(f"testnet exited early with {await proc.wait()}: {lines}")
            lines.append(line.rstrip("\n"))
    return lines


def printed_path(lines: list[str], start: str) -> Path:
    """The path ending the line that starts with ``start`` (after its last ``"): "``)."""
    (line,) = [ln for ln in lines if ln.startswith(start)]
    return Path(line.rsplit("): ", 1)[1])


async def test_testnet_writes_a_fleet_file_and_prometheus_targets(tmp_path: Path) -> None:
    """`zakura testnet --nodes 3 --api-base-port 0 --data-dir D`: D/fleet.toml and
    D/prometheus-targets.json name exactly the printed nodes, and both work as written."""
    proc = await asyncio.create_subprocess_exec(
        *ZAKURA, "testnet", "--nodes", "3", "--api-base-port", "0", "--data-dir", str(tmp_path),
        "--log-level", "warning",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    root = absolute(tmp_path)
    try:
        rows = await read_table(proc, 3, timeout=30)
        after = await read_lines_until(proc, "Ctrl-C", timeout=10)
        fleet_path = printed_path(after, "zakura testnet: fleet file")
        targets_path = printed_path(after, "zakura testnet: Prometheus file_sd targets")
        assert fleet_path == root / "fleet.toml"
        assert targets_path == root / "prometheus-targets.json"

        with fleet_path.open("rb") as f:
            fleet = tomllib.load(f)
        assert fleet == {
            "node": [
                {
                    "name": f"node-{r.index:02d}",
                    "url": f"http://{r.api}",
                    "token_file": str(root / f"node-{r.index:02d}" / "operator.token"),
                }
                for r in rows
            ]
        }
        targets = json.loads(targets_path.read_text())
        assert targets == [
            {
                "targets": [r.api for r in rows],
                "labels": {"job": "zakura", "testnet": tmp_path.name},
            }
        ]

        async with aiohttp.ClientSession() as http:
            # Each fleet entry reaches its node with its token file ...
            for entry, row in zip(fleet["node"], rows, strict=True):
                token_file = Path(entry["token_file"])
                assert token_file.is_absolute()
                token = token_of(token_file.parent)
                snap = await fetch_snapshot(http, entry["url"].removeprefix("http://"), token)
                assert snap is not None and snap["node"]["label"] == row.label
            # ... and every Prometheus target serves /metrics without one.
            for target in targets[0]["targets"]:
                async with http.get(f"http://{target}/metrics") as resp:
                    assert resp.status == 200
                    assert "zakura_p2p_conn_active" in await resp.text()

        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await proc.wait() == 0
    finally:
        await stop_process(proc)
    assert fleet_path.is_file() and targets_path.is_file()  # kept with the data dir
    assert not list(root.glob(".*.tmp"))


#: Strings a TOML emitter gets wrong: quotes, backslashes, control characters, non-ASCII,
#: TOML's own multi-line delimiters, and text that looks like an escape.
NASTY = [
    'a"b',
    "back\\slash",
    "new\nline",
    "tab\tcr\r",
    "\x00\x08\x1f\x7f",
    "é 漢 🦀",
    "'''",
    '"""',
    "\\u0041",
    "# not a comment",
]


@given(st.text())
def test_toml_string_round_trips_through_tomllib(value: str) -> None:
    assert tomllib.loads(f"v = {toml_string(value)}\n") == {"v": value}


def test_fleet_toml_round_trips_through_tomllib() -> None:
    entries = [
        FleetEntry(f"node-{i:02d}{odd}", f"http://127.0.0.1:{9100 + i}/{odd}", Path(f"/d/{odd}/t"))
        for i, odd in enumerate(NASTY)
    ]
    text = format_fleet_toml(entries)
    assert tomllib.loads(text) == {
        "node": [{"name": e.name, "url": e.url, "token_file": str(e.token_file)} for e in entries]
    }
    assert '[[node]]\nname = "node-00a\\"b"\n' in text
    assert tomllib.loads(format_fleet_toml([])) == {}


def test_toml_string_refuses_what_toml_cannot_hold() -> None:
    with pytest.raises(ValueError, match="not valid Unicode"):
        toml_string("/data/\udcff")  # a non-UTF-8 byte, decoded with surrogateescape


def test_prometheus_targets_are_a_file_sd_target_group() -> None:
    text = format_prometheus_targets(["127.0.0.1:9100", "127.0.0.1:9101"], "tn")
    assert json.loads(text) == [
        {
            "targets": ["127.0.0.1:9100", "127.0.0.1:9101"],
            "labels": {"job": "zakura", "testnet": "tn"},
        }
    ]


# ---------------------------------------------------------------------- the Testnet class
async def test_testnet_class_lifecycle() -> None:
    net = Testnet(3, api_base_port=0, target_peers=2)
    async with net:
        root = net.data_dir
        assert [n.index for n in net.nodes] == [0, 1, 2]
        assert [n.data_dir.name for n in net.nodes] == ["node-00", "node-01", "node-02"]
        assert all(n.alive and n.api is not None for n in net.nodes)
        assert all(n.log_path.exists() for n in net.nodes)
        assert len({n.listen_port for n in net.nodes}) == 3
        # With an API: the fleet file and the Prometheus targets, in the (temp) data dir.
        assert net.fleet_file is not None and net.fleet_file.parent == absolute(root)
        assert net.prometheus_targets_file is not None
        assert {net.fleet_file.name, net.prometheus_targets_file.name} <= set(listing(root))
        async with aiohttp.ClientSession() as http:

            async def all_reached() -> bool:
                snaps = [await fetch_snapshot(http, n.api or "", n.token or "") for n in net.nodes]
                return all(converged(s) for s in snaps)

            deadline = time.monotonic() + 20
            while not await all_reached():
                assert time.monotonic() < deadline, "3-node testnet did not converge"
                await asyncio.sleep(0.1)
    # Clean stop: every child exited by itself on SIGTERM (code 0), the temp dir is gone.
    assert [n.process.returncode for n in net.nodes] == [0, 0, 0]
    assert not root.exists()


async def test_child_that_cannot_start_is_reported_and_nothing_leaks(tmp_path: Path) -> None:
    base = consecutive_free_ports(2)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", base + 1))
        squatter.listen()
        net = Testnet(2, base_port=base, data_dir=tmp_path)
        with pytest.raises(TestnetError) as info:
            await net.start()
    message = str(info.value)
    assert "node 1" in message
    assert "already in use" in message  # the child's own one-line error, quoted from its log
    assert info.value.exit_code == 2
    # Node 0 had started; start() stopped it before raising.
    assert net.nodes and all(n.process.returncode is not None for n in net.nodes)
    assert (tmp_path / "node-00" / "node.log").is_file()  # a given data dir is kept


# ---------------------------------------------------------------------- the miner
def test_only_node_zero_gets_the_mine_interval(tmp_path: Path) -> None:
    net = Testnet(3, data_dir=tmp_path, blocks=50, mine_interval=0.2)
    miner = net.command(0, None)
    assert miner[miner.index("--mine-interval") + 1] == "0.2"
    for i in (1, 2):
        assert "--mine-interval" not in net.command(i, "127.0.0.1:1")
    assert "--mine-interval" not in Testnet(2, data_dir=tmp_path).command(0, None)
    with pytest.raises(ValueError, match="mine_interval must be positive"):
        Testnet(2, mine_interval=0)
    assert miner_summary(net) == (
        "zakura testnet: node 0 is the miner: it starts with the seeded chain to height 50 "
        "(seed 1) and mines a block every 0.2 s"
    )
    assert miner_summary(Testnet(2, data_dir=tmp_path)) is None


def cmdline(pid: int) -> list[str]:
    """The arguments ``pid`` runs with, as the kernel has them."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def header_tip(snap: dict[str, Any] | None) -> int:
    return -1 if snap is None else int(snap["chain"]["header_tip"]["height"])


async def test_testnet_miner_grows_the_chain_and_the_others_follow(tmp_path: Path) -> None:
    """`zakura testnet --nodes 2 --blocks 20 --mine-interval 0.2`: node 0 runs with the flag,
    its header tip passes 20, and node 1 (started at genesis) follows past 20 too."""
    proc = await asyncio.create_subprocess_exec(
        *ZAKURA, "testnet", "--nodes", "2", "--blocks", "20", "--mine-interval", "0.2",
        "--api-base-port", "0", "--data-dir", str(tmp_path), "--log-level", "warning",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        rows = await read_table(proc, 2, timeout=30)
        miner = cmdline(rows[0].pid)
        assert miner[miner.index("--mine-interval") + 1] == "0.2"
        assert "--mine-interval" not in cmdline(rows[1].pid)
        tips: dict[int, int] = {}
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 20
            while not all(tips.get(i, -1) > 20 for i in (0, 1)):
                assert time.monotonic() < deadline, f"header tips stuck at {tips}"
                await asyncio.sleep(0.1)
                for i, row in enumerate(rows):
                    tips[i] = header_tip(
                        await fetch_snapshot(http, row.api, token_of(tmp_path / f"node-{i:02d}"))
                    )
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await proc.wait() == 0
    finally:
        await stop_process(proc)
    assert "Traceback" not in (tmp_path / "node-00" / "node.log").read_text()


async def test_testnet_mine_interval_must_be_positive(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *ZAKURA, "testnet", "--nodes", "2", "--mine-interval", "0", "--data-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 2
    assert "zakura testnet: error: argument --mine-interval: must be positive" in err.decode()
    assert out == b""
    assert not (tmp_path / "node-00").exists()


# ---------------------------------------------------------------------- hostile nodes
async def read_role_table(
    proc: asyncio.subprocess.Process, nodes: int, timeout: float
) -> tuple[list[Row], list[str], list[str]]:
    """Like :func:`read_table` for a testnet with hostile nodes: rows, roles, lines after."""
    assert proc.stdout is not None
    rows: list[Row] = []
    roles: list[str] = []
    after: list[str] = []
    seen_header = False
    async with asyncio.timeout(timeout):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise AssertionError(f"testnet exited early with {await proc.wait()}")
            fields = line.split()
            if fields == ["idx", "label", "listen", "api", "pid", "role"]:
                seen_header = True
            elif seen_header and len(rows) < nodes:
                assert len(fields) == 6, line
                rows.append(Row(int(fields[0]), fields[1], fields[2], fields[3], int(fields[4])))
                roles.append(fields[5])
            elif seen_header:
                after.append(line.strip())
                if line.startswith("Ctrl-C"):
                    return rows, roles, after


async def test_hostile_testnet_marks_and_runs_its_hostile_node(tmp_path: Path) -> None:
    """`--nodes 3 --hostile 1 --hostile-mode status-spam`: node 2 is hostile, and it shows."""
    proc = await asyncio.create_subprocess_exec(
        *ZAKURA, "testnet", "--nodes", "3", "--hostile", "1", "--hostile-mode", "status-spam",
        "--api-base-port", "0", "--data-dir", str(tmp_path), "--log-level", "warning",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        rows, roles, after = await read_role_table(proc, 3, timeout=30)
        assert [r.index for r in rows] == [0, 1, 2]
        assert roles == ["honest", "honest", "hostile:status-spam"]
        assert any(line.startswith("hostile nodes 2 (status-spam)") for line in after), after
        assert any("status_spam" in line for line in after), after
        hostile = rows[2].label

        # The attack is real: node 0 (which node 2 bootstraps from) records it, record-only.
        def spam_seen(snap: dict[str, Any] | None) -> bool:
            return snap is not None and any(
                m["label"] == hostile and m["reason"] == "status_spam" and m["action"] == "recorded"
                for m in snap["misbehavior"]
            )

        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 20
            while not spam_seen(
                snap := await fetch_snapshot(http, rows[0].api, token_of(tmp_path / "node-00"))
            ):
                assert time.monotonic() < deadline, "node 0 recorded no status_spam"
                await asyncio.sleep(0.1)
        assert snap is not None
        assert hostile in {p["label"] for p in snap["peers"]}  # record-only: still connected
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await proc.wait() == 0
    finally:
        await stop_process(proc)
    assert "HOSTILE" not in (tmp_path / "node-00" / "node.log").read_text()
    assert "HOSTILE header sync" in (tmp_path / "node-02" / "node.log").read_text()


def test_hostile_nodes_are_the_last_ones_and_get_the_chain(tmp_path: Path) -> None:
    net = Testnet(
        4, data_dir=tmp_path, blocks=50, hostile=2, hostile_mode="slow-responder",
        hostile_delay=40.0,
    )  # fmt: skip
    cmds = [net.command(i, None if i == 0 else "127.0.0.1:1") for i in range(4)]
    assert [net.hostile_mode_of(i) for i in range(4)] == [None, None, *["slow-responder"] * 2]
    for i, cmd in enumerate(cmds):
        hostile = i >= 2
        assert ("--hostile-mode" in cmd) is hostile
        assert ("--hostile-delay" in cmd) is hostile
        # The miner and the hostile nodes carry the chain, the honest followers do not; a
        # slow responder is ahead of the miner, so honest nodes must ask it.
        assert ("--blocks" in cmd) is (i == 0 or hostile)
    assert cmds[0][cmds[0].index("--blocks") + 1] == "50"
    assert cmds[3][cmds[3].index("--blocks") + 1] == str(50 + HOSTILE_LEAD_BLOCKS)
    assert cmds[3][cmds[3].index("--hostile-mode") + 1] == "slow-responder"
    assert cmds[3][cmds[3].index("--hostile-delay") + 1] == "40.0"
    spam = Testnet(3, data_dir=tmp_path, blocks=50, hostile=1, hostile_mode="status-spam")
    spammer = spam.command(2, "127.0.0.1:1")
    assert spammer[spammer.index("--blocks") + 1] == "50"  # not asked: no lead needed


@pytest.mark.parametrize("mode", ["header-without-body", "backwards-time"])
def test_forging_hostile_nodes_get_the_miners_chain_without_a_lead(
    tmp_path: Path, mode: str
) -> None:
    """Their forged header, one above the chain they share with node 0, is all the lead they
    need: honest nodes at node 0's tip ask them for it."""
    net = Testnet(3, data_dir=tmp_path, blocks=50, hostile=1, hostile_mode=mode)
    cmd = net.command(2, "127.0.0.1:1")
    assert cmd[cmd.index("--blocks") + 1] == "50"
    assert cmd[cmd.index("--hostile-mode") + 1] == mode


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hostile": 3, "hostile_mode": "silent"}, "need --nodes 4 or more"),
        ({"hostile": 1}, "required with --hostile 1"),
        ({"hostile_mode": "silent"}, "needs --hostile N"),
        ({"hostile": 1, "hostile_mode": "flood"}, "unknown hostile mode 'flood'"),
    ],
)
def test_testnet_refuses_inconsistent_hostile_settings(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Testnet(3, **kwargs)


@pytest.mark.parametrize(
    ("args", "flag", "message"),
    [
        (["--nodes", "2", "--hostile", "2", "--hostile-mode", "silent"], "--hostile", "node 0"),
        (["--nodes", "3", "--hostile", "1"], "--hostile-mode", "status-spam, "),
        (["--nodes", "3", "--hostile-mode", "silent"], "--hostile", "needs --hostile N"),
        (["--nodes", "3", "--hostile", "1", "--hostile-mode", "flood"], "--hostile-mode",
         "invalid choice"),
        (["--nodes", "3", "--hostile", "1", "--hostile-mode", "silent", "--hostile-delay", "5"],
         "--hostile-delay", "only applies to --hostile-mode slow-responder"),
    ],
)  # fmt: skip
async def test_hostile_usage_errors_name_the_flag(
    tmp_path: Path, args: list[str], flag: str, message: str
) -> None:
    proc = await asyncio.create_subprocess_exec(
        *ZAKURA, "testnet", *args, "--data-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 2
    text = err.decode()
    assert f"argument {flag}: " in text and message in text, text
    assert out == b""
    assert not (tmp_path / "node-00").exists()  # refused before anything started


@pytest.mark.parametrize("command", ["testnet", "node"])
def test_help_teaches_every_hostile_mode(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    from node_core.header_sync.hostile import MODE_HELP
    from zakura.cli import main

    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "--hostile-mode MODE" in text
    for mode, help_ in MODE_HELP.items():
        assert f"\n  {mode.value}\n    does: " in text
        assert "victims: " + " ".join(help_.victims.split()[:3]) in text


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--hostile-mode", "flood"], "--hostile-mode"),
        (["--hostile-delay", "5"], "--hostile-delay"),
        (["--hostile-mode", "status-spam", "--hostile-delay", "5"], "--hostile-delay"),
    ],
)
async def test_node_hostile_usage_errors(tmp_path: Path, args: list[str], flag: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *ZAKURA, "node", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "n"), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 2
    assert f"zakura node: error: argument {flag}: " in err.decode(), err.decode()
    assert out == b""
