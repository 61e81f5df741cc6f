"""Fault injection for tests: a live cluster of real nodes, invariants, and a pytest plugin.

- :mod:`zakura.chaos.cluster`: :class:`~zakura.chaos.cluster.Cluster`, real ``zakura node``
  processes on 127.0.0.1 (a :class:`~zakura.testnet.Testnet`) driven over their control API:
  every peer fault, link faults, process faults, waits over snapshots, a merged journal and a
  timeline of what was done to it;
- :mod:`zakura.chaos.invariants`: what must hold afterwards, as plain functions over
  snapshots, journals and stores, each naming the invariant, the node and the evidence;
- :mod:`zakura.chaos.plugin`: the ``zakura_cluster`` pytest fixture and marker.

Nothing is imported here, so ``import zakura.chaos.plugin`` (which pytest does at start-up
through the ``pytest11`` entry point) does not pull in the node.
"""
