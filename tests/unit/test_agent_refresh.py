"""The kubelet's token refresh rule with a fake clock, JWT time reading, and the retry backoff."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from kubesat.agent.refresh import (
    MAX_TTL,
    Backoff,
    TokenFormatError,
    fetch_error,
    jitter_seconds,
    next_attempt,
    refresh_at,
    requires_refresh,
    token_lifetime,
    token_request_times,
    token_times,
)

T0 = 1_800_000_000.0


def jwt(claims: dict[str, Any]) -> str:
    def enc(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{enc({'alg': 'RS256', 'kid': 'k'})}.{enc(claims)}.c2ln"


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_3607_token_refreshes_after_80_percent() -> None:
    clock = FakeClock(T0)
    exp = T0 + 3607
    assert refresh_at(T0, exp) == T0 + 3607 - 721  # the kubelet's integer 20 %: 2886 s after issue
    clock.advance(2886)
    assert not requires_refresh(T0, exp, clock())
    clock.advance(0.001)
    assert requires_refresh(T0, exp, clock())


def test_jitter_brings_refresh_forward_in_whole_seconds() -> None:
    exp = T0 + 3600
    assert jitter_seconds(0.0) == 0
    assert jitter_seconds(0.99) == 9
    assert jitter_seconds(0.55) == 5
    assert refresh_at(T0, exp, 0.55) == T0 + 2880 - 5
    assert requires_refresh(T0, exp, T0 + 2876, jitter=0.55)
    assert not requires_refresh(T0, exp, T0 + 2874, jitter=0.55)
    # The refresh mark never moves by 10 s or more.
    assert all(refresh_at(T0, exp) - refresh_at(T0, exp, j / 100) < 10 for j in range(100))


def test_long_lived_token_refreshed_after_a_day() -> None:
    exp = T0 + 7 * 24 * 3600
    assert refresh_at(T0, exp) == T0 + MAX_TTL
    assert not requires_refresh(T0, exp, T0 + MAX_TTL)
    assert requires_refresh(T0, exp, T0 + MAX_TTL + 1)
    assert refresh_at(T0, exp, 0.95) == T0 + MAX_TTL - 9


def test_clock_leap_back_forces_refresh() -> None:
    assert requires_refresh(T0, T0 + 3600, T0 - 1)
    assert not requires_refresh(T0, T0 + 3600, T0)


def test_short_token_600s() -> None:
    assert refresh_at(T0, T0 + 600) == T0 + 480
    assert not requires_refresh(T0, T0 + 600, T0 + 479)
    assert requires_refresh(T0, T0 + 600, T0 + 481)


def test_token_times_reads_iat_exp_unverified() -> None:
    tok = jwt({"iat": 1700000000, "exp": 1700003607, "sub": "system:serviceaccount:default:default"})
    assert token_times(tok) == (1700000000.0, 1700003607.0)
    assert token_lifetime(tok) == (1700000000.0, 1700003607.0)


def test_extended_token_lifetime_uses_warnafter() -> None:
    tok = jwt({"iat": 1700028966, "exp": 1731564966,
               "kubernetes.io": {"namespace": "default", "warnafter": 1700032573}})
    assert token_times(tok) == (1700028966.0, 1731564966.0)
    assert token_lifetime(tok) == (1700028966.0, 1700032573.0)
    assert refresh_at(*token_lifetime(tok)) == 1700028966 + 2886


@pytest.mark.parametrize("bad", ["", "a.b", "a.!!!.c", jwt({"iat": "x", "exp": 1}), jwt({"exp": 1}),
                                 "a." + base64.urlsafe_b64encode(b"[1]").decode() + ".c"])
def test_token_times_refuses_garbage(bad: str) -> None:
    with pytest.raises(TokenFormatError):
        token_times(bad)


def test_token_request_times_like_the_kubelet() -> None:
    tr = {"spec": {"expirationSeconds": 3607},
          "status": {"token": "x", "expirationTimestamp": "2027-01-15T08:00:07Z"}}
    iat, exp = token_request_times(tr)
    assert exp - iat == 3607
    assert iat == pytest.approx(1799996400.0)
    # No spec.expirationSeconds in the response: fall back to the JWT's iat.
    tok = jwt({"iat": 1799996400, "exp": 1831190400})
    assert token_request_times({"status": {"token": tok, "expirationTimestamp": "2027-01-15T08:00:07Z"}}) == (
        1799996400.0, exp)


def test_backoff_exponential_capped_and_reset() -> None:
    b = Backoff(initial=1, factor=2, cap=30, jitter=0)
    assert [b.next_delay() for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    b.reset()
    assert b.next_delay() == 1


def test_backoff_jitter_injectable() -> None:
    b = Backoff(initial=10, factor=2, cap=100, jitter=0.5, rand=lambda: 1.0)
    assert b.next_delay() == 15
    assert b.next_delay() == 30
    assert Backoff(initial=80, cap=100, jitter=0.5, rand=lambda: 1.0).next_delay() == 100


def test_next_attempt_retries_with_backoff_then_resumes_schedule() -> None:
    clock = FakeClock(T0 + 2900)
    b = Backoff(initial=2, factor=2, cap=60, jitter=0)
    exp = T0 + 3607
    assert next_attempt(T0, exp, clock(), 0.0, b, failed=True) == clock() + 2
    assert next_attempt(T0, exp, clock(), 0.0, b, failed=True) == clock() + 4
    # A fresh token after a success: scheduled at its 80 % mark, backoff reset.
    clock.advance(10)
    new_iat = clock()
    assert next_attempt(new_iat, new_iat + 3607, clock(), 0.0, b) == new_iat + 2886
    assert b.failures == 0
    # A token already due is refreshed now, not in the past.
    assert next_attempt(T0, exp, clock(), 0.0) == clock()


def test_fetch_error_words() -> None:
    assert fetch_error("k", "boom", had_token=False, token_expired=False) == "failed to fetch token: boom"
    assert fetch_error("k", "boom", had_token=True, token_expired=True) == "token k expired and refresh failed: boom"
    assert fetch_error("k", "boom", had_token=True, token_expired=False) is None
