"""The brief snapshot's byte rates (node_core/observe/peer_rates.py), on a clock the test
moves: sampled at most once a second, over the last 4 s, null for a connection seen once,
and never averaged over a pause in reading."""

from __future__ import annotations

from dataclasses import dataclass

from node_core.observe.peer_rates import RATE_WINDOW_S, SAMPLE_EVERY_S, PeerRates


@dataclass
class Peer:
    conn_id: int


@dataclass
class Conn:
    peer: Peer
    bytes_in: int = 0
    bytes_out: int = 0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_rate_is_over_the_window_and_holds_between_samples() -> None:
    clock, conn = Clock(), Conn(Peer(7))
    rates = PeerRates(clock=clock)
    assert rates.rates([conn]) == {}  # one sample: no rate yet
    for _ in range(6):  # 1,000 bytes in and 10 out a second
        clock.now += SAMPLE_EVERY_S
        conn.bytes_in += 1000
        conn.bytes_out += 10
        got = rates.rates([conn])
    assert got == {7: (1000.0, 10.0)}
    conn.bytes_in += 999_999  # between samples: the same figures, the same dict
    clock.now += SAMPLE_EVERY_S / 2
    assert rates.rates([conn]) is got
    clock.now += SAMPLE_EVERY_S / 2  # the next sample: the burst over the 4 s window
    assert rates.rates([conn])[7][0] == round((3 * 1000 + 999_999) / RATE_WINDOW_S, 1)


def test_a_young_connection_is_rated_from_its_first_sample() -> None:
    clock, old, young = Clock(), Conn(Peer(1)), Conn(Peer(2))
    rates = PeerRates(clock=clock)
    rates.rates([old])
    clock.now += SAMPLE_EVERY_S
    assert 2 not in rates.rates([old, young])
    clock.now += 2 * SAMPLE_EVERY_S
    young.bytes_out = 600
    assert rates.rates([old, young])[2] == (0.0, 300.0)


def test_a_pause_in_reading_is_not_averaged_over() -> None:
    clock, conn = Clock(), Conn(Peer(3))
    rates = PeerRates(clock=clock)
    rates.rates([conn])
    clock.now += 60.0  # nobody read the brief document for a minute
    conn.bytes_in = 60_000
    assert rates.rates([conn]) == {}
    clock.now += SAMPLE_EVERY_S
    conn.bytes_in += 500
    assert rates.rates([conn]) == {3: (500.0, 0.0)}


def test_a_counter_never_gives_a_negative_rate() -> None:
    clock, conn = Clock(), Conn(Peer(4), bytes_in=5000)
    rates = PeerRates(clock=clock)
    rates.rates([conn])
    clock.now += SAMPLE_EVERY_S
    conn.bytes_in = 0
    assert rates.rates([conn]) == {4: (0.0, 0.0)}
