"""paired_difference: the serving bench's drift-robust overhead, on latencies whose
pace changes as this host's do."""

from __future__ import annotations

import numpy as np
import pytest

from bench.load import paired_difference, percentile

BLOCK = 20


def _in_turns(paces: list[tuple[float, float]], extra: float) -> tuple[list[float], list[float]]:
    """Raw and server latencies taken in turns, each turn's raw block and server block at
    their own pace (the host may change pace within a turn), the server `extra` slower.
    Jitter is ±2 % per call."""
    rng = np.random.default_rng(7)
    raw: list[float] = []
    server: list[float] = []
    for raw_pace, server_pace in paces:
        raw += list(raw_pace * rng.uniform(0.98, 1.02, BLOCK))
        server += list(server_pace * rng.uniform(0.98, 1.02, BLOCK) + extra)
    return raw, server


FAST, SLOW = 9.0, 14.0  # ms: EfficientNet-Lite0 invokes on this host, a quiet and a busy minute


def test_a_pace_change_within_two_turns_does_not_move_it() -> None:
    """The host runs fast for half the turns and slow for the other half, and in two
    turns it speeds up between the raw block and the server's: the raw series then has
    more slow values than the server's, and the p50 difference says the server is 4 ms
    faster than raw. The paired difference still finds the 1 ms the server adds."""
    paces = [(FAST, FAST)] * 4 + [(SLOW, SLOW)] * 4 + [(SLOW, FAST)] * 2
    raw, server = _in_turns(paces, extra=1.0)
    assert percentile(server, 0.5) - percentile(raw, 0.5) < -2.0  # the pooled p50s are thrown off
    assert paired_difference(raw, server, BLOCK) == pytest.approx(1.0, abs=0.3)


def test_a_steady_host_gives_the_plain_difference() -> None:
    raw, server = _in_turns([(10.0, 10.0)] * 10, extra=0.5)
    assert paired_difference(raw, server, BLOCK) == pytest.approx(0.5, abs=0.2)


def test_a_slower_server_is_positive_and_a_faster_one_negative() -> None:
    raw, server = _in_turns([(10.0, 10.0)] * 4, extra=0.0)
    slower = [v + 0.3 for v in server]
    faster = [v - 0.3 for v in server]
    assert paired_difference(raw, slower, BLOCK) > 0.1
    assert paired_difference(raw, faster, BLOCK) < -0.1
