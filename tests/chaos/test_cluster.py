"""Cluster: every fault through a real node's API, the timeline, waits, and teardown that
leaves no process behind (after an exception, and after SIGINT to pytest).

Real ``zakura node`` processes on loopback; waits poll conditions against deadlines.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest
from chaoskit import pid_alive, poll, proc_state

from node_core.control import Refusal
from zakura.chaos.cluster import Cluster, ClusterTimeout, FaultRefused, NodeState

pytestmark = pytest.mark.timeout(180)


async def test_peer_faults_go_through_the_api_onto_the_timeline() -> None:
    async with Cluster(nodes=3, blocks=50) as c:
        await c.connected(30)
        refused = await c.unpark(0, 1, check=False)
        assert not refused.ok and refused.refusal is Refusal.NOT_PARKED
        with pytest.raises(FaultRefused, match="not_parked"):
            await c.unpark(0, 1)
        effects = [
            (await c.park(1, 2)).effect,
            (await c.unpark(1, 2)).effect,
            (await c.stall(1, 2, "block_sync", seconds=1)).effect,
            (await c.throttle(1, 2, 64)).effect,
            (await c.throttle(1, 2, 0)).effect,
            (await c.panic(1, 2, "header_sync")).effect,
            (await c.disconnect(1, c.label(0))).effect,  # a peer by label works too
        ]
        assert effects == [
            "service_parked",
            "service_resumed",
            "reads_stalled",
            "reads_throttled",
            "throttle_lifted",
            "routine_panicked,connection_closed",
            "connection_closed",
        ]
        timeline = c.timeline
        assert [(r.node, r.fault, r.ok) for r in timeline] == [
            (0, "unpark", False),
            (0, "unpark", False),
            *((1, kind, True) for kind in ("park", "unpark", "stall", "throttle", "throttle")),
            (1, "panic", True),
            (1, "disconnect", True),
        ]
        assert timeline[4].args == {"peer": 2, "service": "block_sync", "seconds": 1}
        assert "not_parked" in timeline[0].result

        rows = await c.journal()
        assert [(r["wall"], r["node"], r["seq"]) for r in rows] == sorted(
            (r["wall"], r["node"], r["seq"]) for r in rows
        )
        injected = [
            r["fields"]["kind"] for r in rows if (r["table"], r["event"]) == ("fault", "injected")
        ]
        assert {r["node"] for r in rows} == {0, 1, 2}
        kinds = ["park", "unpark", "stall", "throttle", "throttle", "panic", "disconnect"]
        assert injected == kinds

        with pytest.raises(ClusterTimeout, match="a miracle") as timeout:
            await c.wait_for(lambda snaps: False, 0.5, what="a miracle")
        assert f"node 0 ({c.label(0)}, running): verified 50 " in str(timeout.value)


async def test_kill_restart_pause_resume() -> None:
    async with Cluster(nodes=3, blocks=200) as c:
        await c.converged(60)
        before = c.node(2)
        record = await c.kill(2)
        assert not pid_alive(before.pid) and c.node(2).state is NodeState.KILLED
        assert c.running == (0, 1)
        # What the node reported durable before SIGKILL is in its store after it.
        assert record.reported is not None and record.stored is not None
        assert record.stored.height >= record.reported.height

        after = await c.restart(2)
        assert after.pid != before.pid and after.id == before.id
        assert (after.listen, after.api) == (before.listen, before.api)
        assert after.state is NodeState.RUNNING

        await c.pause(1)
        assert proc_state(c.node(1).pid) == "T", "stopped by SIGSTOP"
        assert c.running == (0, 2)
        await c.resume(1)
        tip = await c.converged(60)
        assert tip.height >= 200

        boots = {r["boot_id"] for r in await c.journal([2])}
        assert len(boots) == 2, "node 2's journal of both runs"
        assert [r.fault for r in c.timeline] == ["kill", "restart", "pause", "resume"]


async def test_no_node_left_after_an_exception(tmp_path: Path) -> None:
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="boom"):
        async with Cluster(nodes=2) as c:
            await c.pause(1)  # a stopped node must be resumed or it ignores SIGTERM
            pids = [n.pid for n in c.nodes]
            data_dir = c.data_dir
            raise RuntimeError("boom")
    assert pids and not [p for p in pids if pid_alive(p)]
    assert not data_dir.exists(), "a temp data dir is removed"


INNER_TEST = """
import asyncio, os

import pytest

from zakura.chaos.cluster import Cluster


@pytest.mark.asyncio
async def test_waits_forever():
    async with Cluster(nodes=2) as c:
        await c.pause(1)
        path = os.environ["PIDS_FILE"]
        with open(path + ".tmp", "w") as f:
            f.write(" ".join(str(n.pid) for n in c.nodes))
        os.replace(path + ".tmp", path)
        await asyncio.Event().wait()
"""


async def test_no_node_left_after_sigint_to_pytest(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER_TEST))
    pids_file = tmp_path / "pids"
    # The inner pytest gets Python's own SIGINT handler back first: a pytest-xdist worker
    # ignores SIGINT, and an ignored signal stays ignored across exec (Python then installs
    # no handler), which would make this test depend on how the outer suite was run.
    inner = (
        "import signal, sys, pytest; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "sys.exit(pytest.main(['-p', 'no:cacheprovider', 'test_inner.py']))"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        inner,
        cwd=tmp_path,
        env={**os.environ, "PIDS_FILE": str(pids_file)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await poll(pids_file.exists, 60, "the inner test's cluster to start")
        pids = [int(p) for p in pids_file.read_text().split()]
        assert len(pids) == 2 and all(pid_alive(p) for p in pids)
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert b"KeyboardInterrupt" in out, out.decode(errors="replace")[-2000:]
    # Checked the moment pytest exited: its teardown reaped them, nothing raced to clean up.
    assert not [p for p in pids if pid_alive(p)], out.decode(errors="replace")[-2000:]
