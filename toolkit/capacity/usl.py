"""Universal Scalability Law (Gunther): throughput against concurrency.

    X(N) = lambda * N / (1 + sigma * (N - 1) + kappa * N * (N - 1))

sigma is contention (serialisation), kappa coherency (crosstalk), lambda the
throughput of one unit of concurrency with no interference. The fit is a
non-linear least-squares problem solved with numpy only: a coarse grid over
(sigma, kappa) with lambda profiled out (it enters linearly), refined with a
bounded Levenberg-Marquardt on all three parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

MIN_POINTS_FOR_CONFIDENCE = 6


@dataclass(frozen=True)
class UslFit:
    sigma: float
    kappa: float
    lambda_: float
    r_squared: float
    n_points: int
    max_measured_concurrency: float
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def peak_concurrency(self) -> float | None:
        """N* = sqrt((1 - sigma) / kappa); None when kappa is 0 (throughput never goes retrograde)."""
        if self.kappa <= 0.0:
            return None
        return math.sqrt(max(0.0, 1.0 - self.sigma) / self.kappa)

    @property
    def peak_throughput(self) -> float:
        """X(N*), or the asymptote lambda / sigma when there is no peak (inf if both are 0)."""
        n_star = self.peak_concurrency
        if n_star is not None:
            return self.predict(n_star)
        return self.lambda_ / self.sigma if self.sigma > 0 else math.inf

    def predict(self, n: float) -> float:
        return usl_throughput(n, self.sigma, self.kappa, self.lambda_)

    def curve(self, n_max: float, points: int = 100) -> list[tuple[float, float]]:
        ns = np.linspace(max(n_max / points, 1e-9), n_max, points)
        return [(float(n), self.predict(float(n))) for n in ns]

    def to_dict(self) -> dict:
        n_star = self.peak_concurrency
        return {
            "sigma": self.sigma,
            "kappa": self.kappa,
            "lambda": self.lambda_,
            "r_squared": self.r_squared,
            "points": self.n_points,
            "peak_concurrency": n_star,
            "peak_rps": None if math.isinf(self.peak_throughput) else self.peak_throughput,
            "max_measured_concurrency": self.max_measured_concurrency,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "UslFit":
        return cls(
            sigma=float(d["sigma"]),
            kappa=float(d["kappa"]),
            lambda_=float(d["lambda"]),
            r_squared=float(d["r_squared"]),
            n_points=int(d["points"]),
            max_measured_concurrency=float(d.get("max_measured_concurrency") or 0.0),
            warnings=tuple(d.get("warnings") or ()),
        )


def usl_throughput(n: float | np.ndarray, sigma: float, kappa: float, lambda_: float) -> float | np.ndarray:
    n_arr = np.asarray(n, dtype=float)
    out = lambda_ * n_arr / (1.0 + sigma * (n_arr - 1.0) + kappa * n_arr * (n_arr - 1.0))
    return float(out) if out.ndim == 0 else out


def _profile_lambda(g: np.ndarray, x: np.ndarray) -> float:
    denom = float(np.dot(g, g))
    return float(np.dot(g, x) / denom) if denom > 0 else 0.0


def _sse(params: np.ndarray, n: np.ndarray, x: np.ndarray) -> float:
    r = x - usl_throughput(n, params[0], params[1], params[2])
    return float(np.dot(r, r))


def _clip(params: np.ndarray) -> np.ndarray:
    return np.array([min(max(params[0], 0.0), 1.0), max(params[1], 0.0), max(params[2], 1e-300)])


def fit_usl(concurrency: Sequence[float], throughput: Sequence[float]) -> UslFit:
    """Least-squares fit of the USL. Needs at least 3 points with distinct concurrency > 0.

    Raises ValueError on data that cannot be fitted (the caller turns it into a one-line error).
    """
    n = np.asarray(concurrency, dtype=float)
    x = np.asarray(throughput, dtype=float)
    if n.shape != x.shape:
        raise ValueError("USL fit: concurrency and throughput must have the same length")
    keep = np.isfinite(n) & np.isfinite(x) & (n > 0) & (x >= 0)
    n, x = n[keep], x[keep]
    if len(np.unique(n)) < 3:
        raise ValueError(f"USL fit needs at least 3 distinct concurrency levels, got {len(np.unique(n))}")

    # Coarse grid on (sigma, kappa); kappa on a log scale scaled to the data's range of N.
    n_max = float(n.max())
    sigmas = np.concatenate([[0.0], np.geomspace(1e-4, 1.0, 40)])
    kappas = np.concatenate([[0.0], np.geomspace(1e-7 / n_max, 10.0 / n_max, 50)])
    best: tuple[float, np.ndarray] | None = None
    for s in sigmas:
        for k in kappas:
            g = n / (1.0 + s * (n - 1.0) + k * n * (n - 1.0))
            lam = _profile_lambda(g, x)
            p = np.array([s, k, lam])
            sse = _sse(p, n, x)
            if best is None or sse < best[0]:
                best = (sse, p)
    assert best is not None
    params = best[1]

    # Bounded Levenberg-Marquardt, parameters scaled so the damping treats them alike.
    scale = np.array([1.0, 1.0 / n_max, max(params[2], 1e-12)])
    mu = 1e-3
    sse = _sse(params, n, x)
    for _ in range(500):
        s, k, lam = params
        d = 1.0 + s * (n - 1.0) + k * n * (n - 1.0)
        resid = x - lam * n / d
        jac = np.column_stack(
            [-lam * n * (n - 1.0) / d**2, -lam * n * n * (n - 1.0) / d**2, n / d]
        ) * scale
        jtj = jac.T @ jac
        jtr = jac.T @ resid
        improved = False
        for _ in range(30):
            step = np.linalg.solve(jtj + mu * np.diag(np.diag(jtj) + 1e-12), jtr)
            cand = _clip(params + step * scale)
            cand_sse = _sse(cand, n, x)
            if cand_sse < sse:
                rel = (sse - cand_sse) / max(sse, 1e-300)
                params, sse = cand, cand_sse
                mu = max(mu / 3.0, 1e-12)
                improved = True
                break
            mu *= 4.0
        if not improved or rel < 1e-14:
            break

    sigma, kappa, lam = (float(v) for v in params)
    if kappa * n_max * n_max < 1e-9:
        kappa = 0.0  # coherency below numerical noise over the measured range: report "no peak"
    if sigma < 1e-12:
        sigma = 0.0
    ss_tot = float(np.sum((x - x.mean()) ** 2))
    r2 = 1.0 - sse / ss_tot if ss_tot > 0 else (1.0 if sse == 0 else 0.0)

    warnings: list[str] = []
    if len(n) < MIN_POINTS_FOR_CONFIDENCE:
        warnings.append(
            f"only {len(n)} points: a USL fit needs at least {MIN_POINTS_FOR_CONFIDENCE} to be trusted"
        )
    if n_max < 2.0:
        warnings.append(
            f"concurrency stayed below 2 (max {n_max:.2g}): the USL says little here; sweep with --mode users"
        )
    if r2 < 0.9:
        warnings.append(f"poor fit (R^2 = {r2:.2f}): throughput does not follow the USL shape here")
    fit = UslFit(sigma, kappa, lam, r2, int(len(n)), n_max, tuple(warnings))
    n_star = fit.peak_concurrency
    if n_star is not None and n_star > 2.0 * n_max:
        warnings.append(
            f"peak concurrency {n_star:.1f} lies beyond the measured range (max {n_max:g}): extrapolated"
        )
        fit = UslFit(sigma, kappa, lam, r2, int(len(n)), n_max, tuple(warnings))
    return fit
