"""The retry policy's properties, and the tenacity loop it drives, with no HTTP and no real sleeping."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mmfs.api.retry import CONNECT_RETRIES, RetryPolicy, connect_retry, retrying
from mmfs.errors import (
    AuthError,
    ContentRefusedError,
    InvalidParamsError,
    MmfsError,
    NotFoundError,
    ProtocolError,
    QuotaError,
    RangeNotSatisfiableError,
    RateLimitError,
    ServerError,
    TransportError,
    UrlExpiredError,
)

policies = st.builds(
    RetryPolicy,
    attempts=st.integers(min_value=1, max_value=20),
    base_delay=st.floats(min_value=0.0, max_value=5.0),
    max_delay=st.floats(min_value=0.0, max_value=30.0),
    deadline=st.floats(min_value=0.0, max_value=120.0),
)
retry_afters = st.none() | st.floats(min_value=0.0, max_value=100.0)
NON_RETRYABLE = [AuthError, ProtocolError, NotFoundError, InvalidParamsError, QuotaError, ContentRefusedError,
                 UrlExpiredError, RangeNotSatisfiableError, MmfsError]


@given(policies, st.integers(min_value=-3, max_value=10_000), retry_afters)
def test_delay_is_within_bounds(policy: RetryPolicy, attempt: int, retry_after: float | None) -> None:
    wait = policy.delay(attempt, retry_after)
    assert wait >= 0.0
    assert wait <= max(policy.max_delay, retry_after or 0.0)
    if retry_after is not None:
        assert wait >= retry_after


@given(policies, st.integers(min_value=1, max_value=60))
def test_delay_never_exceeds_the_exponential_ceiling(policy: RetryPolicy, attempt: int) -> None:
    ceiling = min(policy.max_delay, policy.base_delay * 2.0 ** (attempt - 1))
    assert policy.delay(attempt) <= ceiling + 1e-12


def test_delays_are_jittered() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    assert len({policy.delay(4) for _ in range(20)}) > 1


@given(policies, st.integers(min_value=1, max_value=30), st.floats(min_value=0.0, max_value=200.0))
def test_retryable_errors_are_retried_only_within_attempts_and_deadline(
    policy: RetryPolicy, attempt: int, elapsed: float
) -> None:
    for exc in (ServerError("x"), TransportError("x"), RateLimitError("x")):
        verdict = policy.should_retry(exc, attempt, elapsed)
        assert verdict == (attempt < policy.attempts and elapsed < policy.deadline)


@given(policies, st.integers(min_value=1, max_value=30), st.floats(min_value=0.0, max_value=200.0))
def test_non_retryable_errors_are_never_retried(policy: RetryPolicy, attempt: int, elapsed: float) -> None:
    for cls in NON_RETRYABLE:
        assert not policy.should_retry(cls("x"), attempt, elapsed)
    assert not policy.should_retry(ValueError("x"), attempt, elapsed)
    assert not policy.should_retry(KeyboardInterrupt(), attempt, elapsed)


@given(policies, st.floats(min_value=0.0, max_value=200.0), st.floats(min_value=0.0, max_value=200.0))
def test_retry_after_must_fit_in_the_deadline(
    policy: RetryPolicy, elapsed: float, retry_after: float
) -> None:
    exc = RateLimitError("slow down", retry_after=retry_after)
    if policy.should_retry(exc, 1, elapsed):
        assert elapsed + retry_after < policy.deadline


@given(policies, st.integers(min_value=1, max_value=30), st.floats(min_value=0, max_value=200), retry_afters)
# deadline - elapsed, added back to elapsed, once rounded one unit past the deadline.
@example(RetryPolicy(attempts=1, base_delay=0.0, max_delay=0.0, deadline=34.728688047066775), 1,
         1.8416958883072105, 33.0)
def test_waits_never_run_past_the_deadline(
    policy: RetryPolicy, attempt: int, elapsed: float, retry_after: float | None
) -> None:
    wait = policy.wait_for(RateLimitError("x", retry_after=retry_after), attempt, elapsed)
    assert wait >= 0.0
    # A nanosecond of slack: elapsed + (deadline - elapsed) may round one ulp past the deadline.
    assert elapsed + wait <= max(policy.deadline, elapsed) + 1e-9


class FakeClock:
    """Stands in for both tenacity's sleep and time.monotonic, so a whole retry loop runs instantly."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _run(policy: RetryPolicy, failures: list[BaseException], clock: FakeClock, monkeypatch, **kw) -> object:
    monkeypatch.setattr("tenacity.time.monotonic", lambda: clock.now)
    calls = iter(failures)

    def attempt() -> str:
        exc = next(calls, None)
        if exc is not None:
            raise exc
        return "done"

    return retrying(policy, sleep=clock.sleep, **kw)(attempt)


def test_loop_retries_until_success(monkeypatch) -> None:
    clock = FakeClock()
    policy = RetryPolicy(attempts=5, base_delay=1.0, max_delay=2.0, deadline=100.0)
    assert _run(policy, [ServerError("a"), TransportError("b")], clock, monkeypatch) == "done"
    assert len(clock.slept) == 2 and all(0 <= s <= 2.0 for s in clock.slept)


def test_loop_gives_up_after_attempts_with_the_last_error(monkeypatch) -> None:
    clock = FakeClock()
    policy = RetryPolicy(attempts=3, base_delay=0.1, deadline=100.0)
    errors = [ServerError(str(i)) for i in range(10)]
    with pytest.raises(ServerError) as info:
        _run(policy, errors, clock, monkeypatch)
    assert info.value.message == "2"
    assert len(clock.slept) == 2


def test_loop_stops_at_the_deadline(monkeypatch) -> None:
    clock = FakeClock()
    policy = RetryPolicy(attempts=1000, base_delay=4.0, max_delay=4.0, deadline=10.0)
    with pytest.raises(TransportError):
        _run(policy, [TransportError("down")] * 1000, clock, monkeypatch)
    assert clock.now <= policy.deadline
    assert len(clock.slept) < 1000


def test_loop_honours_retry_after(monkeypatch) -> None:
    clock = FakeClock()
    policy = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.01, deadline=100.0)
    assert _run(policy, [RateLimitError("429", retry_after=7.0)], clock, monkeypatch) == "done"
    assert clock.slept == [7.0]


def test_loop_does_not_wait_for_a_retry_after_beyond_the_deadline(monkeypatch) -> None:
    clock = FakeClock()
    policy = RetryPolicy(deadline=30.0)
    with pytest.raises(RateLimitError):
        _run(policy, [RateLimitError("429", retry_after=600.0)], clock, monkeypatch)
    assert clock.slept == []


@pytest.mark.parametrize("cls", NON_RETRYABLE)
def test_loop_never_retries_non_retryable_errors(cls: type, monkeypatch) -> None:
    clock = FakeClock()
    with pytest.raises(cls):
        _run(RetryPolicy(), [cls("no"), cls("no")], clock, monkeypatch)
    assert clock.slept == []


def test_may_retry_narrows_the_policy(monkeypatch) -> None:
    clock = FakeClock()
    with pytest.raises(ServerError):
        _run(RetryPolicy(), [ServerError("ambiguous")], clock, monkeypatch, may_retry=lambda exc: False)
    assert clock.slept == []


def test_connect_retry_is_for_connection_errors_only() -> None:
    retry = connect_retry()
    assert retry.total == CONNECT_RETRIES and retry.connect == CONNECT_RETRIES
    assert retry.read == 0 and retry.status == 0 and retry.other == 0
    assert not retry.status_forcelist
    assert not retry.respect_retry_after_header
