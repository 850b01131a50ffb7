"""USL fit: recovers published coefficients and reports its own limits."""

from __future__ import annotations

import math

import pytest

from toolkit.capacity.usl import fit_usl, usl_throughput

# SPEC SDM91 benchmark of a Sun SPARCcenter 2000 (16 CPUs), users vs scripts/hour, as used by
# N. J. Gunther, "Guerrilla Capacity Planning" (Springer 2007), ch. 6, and shipped as the
# `specsdm91` data set of the R package `usl` (S. Moeding, CRAN). The package's regression test
# tests/usl-nlxb.Rout.save publishes the three-parameter least-squares fit:
#   sigma (alpha) = 0.0277285, kappa (beta) = 0.0001044, lambda (gamma) = 89.9952330, R^2 = 0.99.
SPECSDM91_LOAD = [1, 18, 36, 72, 108, 144, 216]
SPECSDM91_TPUT = [64.9, 995.9, 1652.4, 1853.2, 1828.9, 1775.0, 1702.2]


def test_recovers_published_specsdm91_coefficients() -> None:
    fit = fit_usl(SPECSDM91_LOAD, SPECSDM91_TPUT)
    assert fit.sigma == pytest.approx(0.0277285, rel=1e-3)
    assert fit.kappa == pytest.approx(0.0001044, rel=2e-3)
    assert fit.lambda_ == pytest.approx(89.9952330, rel=1e-4)
    assert round(fit.r_squared, 2) == 0.99
    # Gunther quotes N* ~ 96 users for this system
    assert fit.peak_concurrency == pytest.approx(math.sqrt((1 - fit.sigma) / fit.kappa))
    assert 95 < fit.peak_concurrency < 98
    assert fit.warnings == ()


def test_recovers_exact_synthetic_curve() -> None:
    ns = [1, 2, 4, 8, 16, 32, 64]
    xs = [usl_throughput(n, 0.05, 0.002, 10.0) for n in ns]
    fit = fit_usl(ns, xs)
    assert fit.sigma == pytest.approx(0.05, rel=1e-4)
    assert fit.kappa == pytest.approx(0.002, rel=1e-4)
    assert fit.lambda_ == pytest.approx(10.0, rel=1e-5)
    assert fit.r_squared == pytest.approx(1.0)
    assert fit.predict(16) == pytest.approx(xs[4], rel=1e-6)


def test_amdahl_data_has_no_peak() -> None:
    ns = [1, 2, 4, 8, 16, 32]
    fit = fit_usl(ns, [usl_throughput(n, 0.1, 0.0, 5.0) for n in ns])
    assert fit.kappa == pytest.approx(0.0, abs=1e-9)
    assert fit.peak_concurrency is None
    assert fit.peak_throughput == pytest.approx(5.0 / fit.sigma)


def test_warns_below_six_points() -> None:
    ns = [1, 2, 4, 8, 16]
    fit = fit_usl(ns, [usl_throughput(n, 0.05, 0.001, 3.0) for n in ns])
    assert any("at least 6" in w for w in fit.warnings)
    six = fit_usl(ns + [24], [usl_throughput(n, 0.05, 0.001, 3.0) for n in ns + [24]])
    assert not any("at least 6" in w for w in six.warnings)


def test_needs_three_distinct_levels() -> None:
    with pytest.raises(ValueError, match="at least 3 distinct"):
        fit_usl([1, 1, 2], [1.0, 1.1, 1.9])


def test_round_trips_through_dict() -> None:
    fit = fit_usl(SPECSDM91_LOAD, SPECSDM91_TPUT)
    from toolkit.capacity.usl import UslFit

    d = fit.to_dict()
    assert d["peak_concurrency"] == pytest.approx(fit.peak_concurrency)
    again = UslFit.from_dict(d)
    assert again.predict(50) == pytest.approx(fit.predict(50))
