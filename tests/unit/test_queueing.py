"""Erlang C and the G/G/c overlay against textbook values."""

from __future__ import annotations

import math

import pytest

from toolkit.capacity.queueing import (
    allen_cunneen_wait,
    erlang_b,
    erlang_c,
    gamma_cv2_from_ratio,
    ggc_response_percentiles,
    mmc_mean_wait,
    mmc_response_quantile,
    mmc_wait_quantile,
    predict_latency,
)


def test_erlang_c_two_servers_unit_load() -> None:
    # c = 2, lambda = 1, mu = 1: P(wait) = a^2 / (2 + a) ... = 1/3 (Kleinrock, Queueing Systems vol. 1)
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3, abs=1e-12)


def test_erlang_c_published_call_centre_values() -> None:
    # Standard Erlang C tables (e.g. the worked example in Koole, "Call Center Mathematics"):
    # 10 Erlangs on 11 agents -> P(wait) = 0.6821; 8 Erlangs on 10 agents -> 0.4092.
    assert erlang_c(11, 10.0) == pytest.approx(0.6821, abs=5e-5)
    assert erlang_c(10, 8.0) == pytest.approx(0.4092, abs=5e-5)


def test_erlang_c_m_m_1_is_utilisation_and_unstable_is_one() -> None:
    assert erlang_c(1, 0.7) == pytest.approx(0.7)
    assert erlang_c(3, 3.0) == 1.0
    assert erlang_b(1, 1.0) == pytest.approx(0.5)


def test_mm1_wait_and_response_closed_forms() -> None:
    lam, mu = 0.5, 1.0
    assert mmc_mean_wait(1, lam, mu) == pytest.approx(lam / (mu * (mu - lam)))
    # M/M/1 response time is exponential with rate mu - lambda
    assert mmc_response_quantile(0.95, 1, lam, mu) == pytest.approx(math.log(20) / (mu - lam), rel=1e-9)
    # waiting-time quantile: P(W > t) = rho e^{-(mu - lam) t}
    assert mmc_wait_quantile(0.95, 1, lam, mu) == pytest.approx(math.log(0.5 / 0.05) / 0.5)
    assert mmc_wait_quantile(0.4, 1, lam, mu) == 0.0  # 60% never wait
    assert mmc_mean_wait(2, 3.0, 1.0) == math.inf


def test_ggc_with_exponential_inputs_reduces_to_mmc() -> None:
    c, lam, mu = 4, 3.0, 1.0
    pw, wq, rho, (p50, p95, p99) = ggc_response_percentiles(c, lam, mu, 1.0, cs2=1.0, ca2=1.0)
    assert pw == pytest.approx(erlang_c(4, 3.0))
    assert wq == pytest.approx(mmc_mean_wait(4, 3.0, 1.0))
    assert rho == pytest.approx(0.75)
    assert p95 == pytest.approx(mmc_response_quantile(0.95, c, lam, mu), rel=0.02)
    assert p99 == pytest.approx(mmc_response_quantile(0.99, c, lam, mu), rel=0.03)


def test_allen_cunneen_scales_with_variability() -> None:
    base = mmc_mean_wait(2, 1.5, 1.0)
    assert allen_cunneen_wait(2, 1.5, 1.0, 1.0, 1.0) == pytest.approx(base)
    assert allen_cunneen_wait(2, 1.5, 1.0, 1.0, 0.0) == pytest.approx(base / 2)  # M/D/c-like
    low = predict_latency(2, 1.5, 1.0, 1.0, cs2=0.1)
    high = predict_latency(2, 1.5, 1.0, 1.0, cs2=2.0)
    assert low.p95_s < high.p95_s
    assert low.model == "erlang-c + allen-cunneen"


def test_prediction_is_deterministic_and_unstable_is_infinite() -> None:
    a = predict_latency(3, 2.0, 1.0, 1.0, 0.5)
    b = predict_latency(3, 2.0, 1.0, 1.0, 0.5)
    assert a == b
    assert predict_latency(2, 2.5, 1.0, 1.0, 0.5).p95_s == math.inf


def test_gamma_cv2_from_percentile_ratio() -> None:
    # exponential: p95 / mean = ln 20 = 2.996 -> cs^2 ~ 1 (Wilson-Hilferty is approximate)
    assert gamma_cv2_from_ratio(math.log(20)) == pytest.approx(1.0, abs=0.05)
    assert gamma_cv2_from_ratio(1.0) == 0.0
    assert gamma_cv2_from_ratio(1.2) < gamma_cv2_from_ratio(2.0)
