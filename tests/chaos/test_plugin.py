"""The pytest plugin, as a project outside this repository meets it: a pytest subprocess in
an empty directory, the plugin found through the installed package's pytest11 entry point.

One test passes on a cluster set up by the marker (hostile node included) with every
invariant holding; one fails on purpose after a fault, and its report must carry the
timeline, the invariants, each node's journal tail and the kept data dir, which must exist.
"""

from __future__ import annotations

import asyncio
import re
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(240)

INNER = """
import pytest

from zakura.chaos.invariants import assert_holds, check_cluster


@pytest.mark.zakura_cluster(
    nodes=3, blocks=120, hostile={"count": 1, "mode": "malformed-headers"}
)
async def test_marker_sets_up_the_cluster(zakura_cluster):
    c = zakura_cluster
    assert len(c.nodes) == 3 and c.hostile == (2,) and c.honest == (0, 1)
    await c.converged(timeout=60)
    await c.wait_for(
        lambda snaps: any(m["label"] == c.label(2) for m in snaps[1]["misbehavior"]),
        60,
        what="node 1 to record the hostile node",
        nodes=[1],
    )
    assert_holds(await check_cluster(c))


@pytest.mark.zakura_cluster(nodes=2)
async def test_fails_on_purpose(zakura_cluster):
    await zakura_cluster.connected(timeout=30)
    await zakura_cluster.park(1, 0)
    assert False, "deliberate failure"
"""


async def test_the_fixture_and_a_failure_report_from_outside_the_repo(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    (tmp_path / "test_outside.py").write_text(textwrap.dedent(INNER))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--basetemp",
        str(tmp_path / "base"),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(200):
        raw, _ = await proc.communicate()
    out = raw.decode(errors="replace")
    assert "1 failed, 1 passed" in out, out[-4000:]
    report = out[out.index("Captured zakura cluster teardown") :]
    assert "fault timeline" in report and "park" in report and "service_parked" in report
    assert "invariants now:" in report and "no stranded work when idle" in report
    assert "journal tail of node 0" in report and "journal tail of node 1" in report
    assert "fault/injected" in report
    kept = re.search(r"cluster data kept in (\S+)", report)
    assert kept is not None, report
    data = Path(kept.group(1))
    assert (data / "node-00" / "node.log").exists() and (data / "node-01").is_dir()
    assert "zakura cluster data kept (failed tests)" in out and str(data) in out
    # The passing test's cluster left nothing behind.
    assert [p.name for p in (tmp_path / "base").glob("zakura-cluster[0-9]*")] == [data.name]
