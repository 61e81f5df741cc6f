"""The pytest plugin: a live :class:`~zakura.chaos.cluster.Cluster` as the ``zakura_cluster``
fixture, set up by the ``zakura_cluster`` marker.

::

    @pytest.mark.zakura_cluster(nodes=4, blocks=500, hostile={"count": 1, "mode": "silent"})
    async def test_something(zakura_cluster):
        await zakura_cluster.converged(timeout=60)
        ...

pytest finds it through the ``pytest11`` entry point of the installed package (no
``conftest.py`` needed). The marker's keywords are :class:`Cluster`'s (``nodes``, ``blocks``,
``hostile``, ``mine_interval``, ``seed``, ``target_peers`` ...); without a marker the cluster
has 3 nodes and only the genesis block. The test must be async, run by pytest-asyncio
(``asyncio_mode = "auto"``, or ``@pytest.mark.asyncio`` on the test).

When the test fails, its report gets a section ``zakura cluster``, printed under the failure:
the fault timeline, the invariants as they stand (:func:`~zakura.chaos.invariants.
check_cluster`), the last journal rows of every node, and where the cluster's data dirs are;
those are kept (each node's ``node.log`` and ``chain.sqlite3`` under ``node-NN/``) and listed
again at the end of the run. A test that passes leaves nothing behind.

Why the section is written at teardown: the cluster is still running then (the fixture has not
stopped it), so the journal and invariants are read from live nodes, and an async fixture can
await them, which a report hook cannot. pytest prints a failed test's teardown sections with
its failure.

Importing this module imports only pytest: pytest loads every installed plugin at start-up,
so the node and aiohttp are imported when a test first asks for the fixture.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from zakura.chaos.cluster import Cluster

__all__ = ["MARKER", "failure_report", "zakura_cluster"]

#: The marker's name (and the fixture's).
MARKER = "zakura_cluster"
#: Journal rows per node in a failure report.
TAIL_ROWS = 15
#: Seconds a failure report may spend reading the cluster.
REPORT_TIMEOUT = 30.0

_CALL_REPORT = pytest.StashKey[pytest.TestReport]()
_KEPT = pytest.StashKey[list[Path]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(nodes=3, blocks=0, hostile=None, mine_interval=None, ...): settings of the "
        "zakura_cluster fixture's Cluster (zakura.chaos.cluster.Cluster's keywords)",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep the call phase's report on the item: the fixture's teardown asks whether the test
    failed."""
    report = yield
    if report.when == "call":
        item.stash[_CALL_REPORT] = report
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    kept = config.stash.get(_KEPT, [])
    if kept:
        terminalreporter.write_sep("-", "zakura cluster data kept (failed tests)")
        for path in kept:
            terminalreporter.write_line(str(path))


async def _cluster_fixture(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    """A started :class:`~zakura.chaos.cluster.Cluster` set up by the ``zakura_cluster``
    marker; stopped after the test, its data kept and reported when the test failed."""
    from zakura.chaos.cluster import Cluster

    marker = request.node.get_closest_marker(MARKER)
    if marker is not None and marker.args:
        raise pytest.UsageError(f"@pytest.mark.{MARKER} takes keywords only: {marker.args!r}")
    settings = {} if marker is None else dict(marker.kwargs)
    data_dir = tmp_path_factory.mktemp("zakura-cluster")
    try:
        cluster = Cluster(data_dir=data_dir, **settings)
    except (TypeError, ValueError) as exc:
        raise pytest.UsageError(f"@pytest.mark.{MARKER}({settings}): {exc}") from None
    await cluster.start()  # on failure it has stopped its nodes; their logs stay for the error
    try:
        yield cluster
    finally:
        report = request.node.stash.get(_CALL_REPORT, None)
        failed = report is not None and report.failed
        if failed:
            text = await failure_report(cluster)
            request.node.add_report_section("teardown", "zakura cluster", text)
            request.config.stash.setdefault(_KEPT, []).append(data_dir)
        cluster.keep_data = True
        try:
            await cluster.close()
        finally:
            if not failed:
                shutil.rmtree(data_dir, ignore_errors=True)


def _fixture() -> Callable[..., Any]:
    try:
        import pytest_asyncio
    except ImportError:  # the plugin loads anyway; only the fixture needs the async runner

        @pytest.fixture(name=MARKER)
        def missing() -> None:
            raise pytest.UsageError(f"the {MARKER} fixture needs pytest-asyncio installed")

        return missing
    return pytest_asyncio.fixture(_cluster_fixture, name=MARKER)


#: The fixture (registered under the marker's name).
zakura_cluster = _fixture()


async def failure_report(cluster: Cluster) -> str:
    """What a failed test's report shows: timeline, invariants, journal tails, data dirs.

    Each part is read within :data:`REPORT_TIMEOUT`; a part that cannot be read says why
    instead, so a broken cluster still gets its timeline and paths reported.
    """
    from zakura.chaos.invariants import check_cluster, format_checks

    parts = ["fault timeline (seconds since start):", _indent(cluster.format_timeline())]
    try:
        async with asyncio.timeout(REPORT_TIMEOUT):
            checks = await check_cluster(cluster, settle=0)
        parts += ["invariants now:", _indent(format_checks(checks))]
    except Exception as exc:
        parts += [f"invariants now: could not be checked: {type(exc).__name__}: {exc}"]
    try:
        async with asyncio.timeout(REPORT_TIMEOUT):
            rows = await cluster.journal()
    except Exception as exc:
        rows = []
        parts += [f"journal: could not be read: {type(exc).__name__}: {exc}"]
    for node in cluster.nodes:
        mine = [r for r in rows if r["node"] == node.index][-TAIL_ROWS:]
        parts.append(f"journal tail of node {node.index} ({node.label}, {node.state.value}):")
        parts.append(_indent("\n".join(_row_text(r) for r in mine) or "(no rows)"))
    parts.append(
        f"cluster data kept in {cluster.data_dir} (node-NN/node.log, node-NN/chain.sqlite3)"
    )
    return "\n".join(parts)


def _row_text(row: dict[str, Any]) -> str:
    from console.widgets.journal_format import row_texts

    when, seq, table, event, peer, service, fields = row_texts(row)
    return f"{when} #{seq:<5} {table}/{event} {peer} {service} {fields}".rstrip()


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
