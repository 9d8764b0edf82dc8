"""The login slow-down policy (`keep.server.throttle.wait_seconds`), by known
answers. Failure times are whole seconds (the server's clock), so a wait
must count from the end of the second a failure happened in: otherwise an
attempt made a moment after the failure, in the next second, would find
its wait already over."""

from __future__ import annotations

from keep.server.throttle import FORGET_AFTER, wait_seconds

FREE, MAX_DELAY = 5, 900


def test_no_wait_while_failures_are_free_or_forgotten() -> None:
    assert wait_seconds(FREE - 1, last=1_000, now=1_000, free=FREE, max_delay=MAX_DELAY) == 0
    forgotten = 1_000 + FORGET_AFTER + 1
    assert wait_seconds(FREE + 9, last=1_000, now=forgotten, free=FREE, max_delay=MAX_DELAY) == 0


def test_each_further_failure_doubles_a_wait_that_is_never_shorter_than_its_delay() -> None:
    for extra, delay in ((0, 1), (1, 2), (2, 4), (5, 32)):
        failures = FREE + extra
        # The failure happened somewhere in second 1,000; an attempt in the
        # next second may be a moment later, so it still waits.
        assert wait_seconds(failures, last=1_000, now=1_001, free=FREE, max_delay=MAX_DELAY) == delay
        assert wait_seconds(failures, last=1_000, now=1_000 + delay, free=FREE, max_delay=MAX_DELAY) == 1
        assert wait_seconds(failures, last=1_000, now=1_001 + delay, free=FREE, max_delay=MAX_DELAY) == 0


def test_the_wait_is_capped_and_never_a_lock_out() -> None:
    failures = FREE + 40
    assert wait_seconds(failures, last=1_000, now=1_000, free=FREE, max_delay=MAX_DELAY) == MAX_DELAY + 1
    assert wait_seconds(failures, last=1_000, now=1_001 + MAX_DELAY, free=FREE, max_delay=MAX_DELAY) == 0
