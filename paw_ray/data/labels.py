"""Attribute labels for SynthFaces, sampled to follow CelebA's real statistics.

The 40 labels of one face are drawn from a *dichotomised Gaussian*: a latent vector
``z ~ N(0, C)`` (unit variances) is thresholded per attribute, label ``j`` is 1 when
``z_j < t_j`` with ``t_j = Phi^-1(p_j)`` and ``p_j`` CelebA's marginal positive rate. So
every marginal is exact in expectation, and the latent correlations ``C_ij`` are fitted
so that ``P(z_i < t_i, z_j < t_j)`` equals CelebA's pairwise joint positive rate
``p_ij`` (``paw_ray/data/celeba_attribute_stats.json``, derived from CelebA's own
``list_attr_celeba.txt``).

Fitting (numpy only, :func:`fit_latent_correlation`):

1. ``t_j`` from the marginals (``statistics.NormalDist.inv_cdf``).
2. For each of the 780 pairs, ``C_ij`` by bisection on the bivariate normal CDF (Genz's
   ``asin`` substitution with Gauss-Legendre quadrature), the target clipped to the
   Frechet bounds and ``|C_ij| <= 0.995`` (some CelebA joints are exactly 0, e.g.
   Heavy_Makeup with 5_o_Clock_Shadow: a correlation of -1 that no PSD matrix of 40
   attributes can hold together with the others).
3. The pairwise matrix is not positive semi-definite; it is repaired with Higham's
   alternating projections (nearest correlation matrix, 2002) and a floor on the
   eigenvalues so that it has a Cholesky factor.

The fitted matrix is *derived data*, committed as ``synthfaces_latent_corr.json`` next to
this file (with the SHA-256 of the statistics it was fitted to), so that sampling does
not depend on refitting numerics. Regenerate it with
``python -m paw_ray.data.labels --refit``; the tests check it is current.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
from functools import lru_cache
from statistics import NormalDist

import numpy as np

from paw_ray.attributes import ATTRIBUTES, NUM_ATTRIBUTES

__all__ = [
    "STATS_FILE",
    "LATENT_FILE",
    "load_stats",
    "sample_labels",
    "apply_label_noise",
    "fit_latent_correlation",
    "bivariate_normal_cdf",
    "latent_model",
]

_HERE = os.path.dirname(os.path.abspath(__file__))
STATS_FILE = os.path.join(_HERE, "celeba_attribute_stats.json")
LATENT_FILE = os.path.join(_HERE, "synthfaces_latent_corr.json")
_RHO_MAX = 0.995
_EIG_FLOOR = 1e-3


# --------------------------------------------------------------------------- statistics

def _stats_digest(marginals: np.ndarray, joint: np.ndarray) -> str:
    payload = json.dumps({"m": np.round(marginals, 6).tolist(), "j": np.round(joint, 6).tolist()})
    return hashlib.sha256(payload.encode()).hexdigest()


@lru_cache(maxsize=1)
def load_stats() -> tuple[np.ndarray, np.ndarray]:
    """CelebA's ``(marginal_positive_rate[40], pairwise_joint_positive_rate[40, 40])``."""
    with open(STATS_FILE, encoding="utf-8") as f:
        obj = json.load(f)
    if list(obj["attributes"]) != list(ATTRIBUTES):
        raise ValueError(f"{STATS_FILE}: attribute order differs from CelebA's")
    m = np.asarray(obj["marginal_positive_rate"], dtype=np.float64)
    j = np.asarray(obj["pairwise_joint_positive_rate"], dtype=np.float64)
    if m.shape != (NUM_ATTRIBUTES,) or j.shape != (NUM_ATTRIBUTES, NUM_ATTRIBUTES):
        raise ValueError(f"{STATS_FILE}: expected 40 marginals and a 40x40 joint matrix")
    return m, j


# --------------------------------------------------------------------------- fitting

_GL_X, _GL_W = np.polynomial.legendre.leggauss(48)


def bivariate_normal_cdf(a, b, rho) -> np.ndarray:
    """``P(X < a, Y < b)`` for a standard bivariate normal with correlation ``rho``
    (arrays broadcast). Genz: ``Phi(a)Phi(b) + 1/2pi int_0^asin(rho)
    exp(-(a^2 + b^2 - 2ab sin t) / (2 cos^2 t)) dt``, Gauss-Legendre in ``t``."""
    a, b, rho = np.broadcast_arrays(np.asarray(a, float), np.asarray(b, float), np.asarray(rho, float))
    phi = np.vectorize(lambda x: NormalDist().cdf(x))
    base = phi(a) * phi(b)
    hi = np.arcsin(np.clip(rho, -0.999999, 0.999999))
    # nodes on [0, hi]
    t = 0.5 * hi[..., None] * (_GL_X + 1.0)
    s, c2 = np.sin(t), np.cos(t) ** 2
    aa, bb = a[..., None], b[..., None]
    f = np.exp(-(aa * aa + bb * bb - 2.0 * aa * bb * s) / (2.0 * c2))
    integral = 0.5 * hi * np.sum(_GL_W * f, axis=-1)
    return base + integral / (2.0 * math.pi)


def _nearest_correlation(a: np.ndarray, iters: int = 200, floor: float = _EIG_FLOOR) -> np.ndarray:
    """Higham's alternating projections onto {PSD with eigenvalues >= floor} and
    {unit diagonal}, with Dykstra's correction."""
    y = a.copy()
    ds = np.zeros_like(a)
    for _ in range(iters):
        r = y - ds
        w, v = np.linalg.eigh((r + r.T) / 2)
        x = (v * np.maximum(w, floor)) @ v.T
        ds = x - r
        y = x.copy()
        np.fill_diagonal(y, 1.0)
    w, v = np.linalg.eigh((y + y.T) / 2)
    y = (v * np.maximum(w, floor)) @ v.T
    d = np.sqrt(np.diag(y))
    y = y / d[:, None] / d[None, :]
    return (y + y.T) / 2


def fit_latent_correlation(marginals: np.ndarray, joint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(thresholds[k], correlation[k, k])`` of a dichotomised Gaussian whose marginals
    are ``marginals`` and whose pairwise joint positive rates are as close to ``joint`` as
    a positive-definite latent correlation allows."""
    k = len(marginals)
    nd = NormalDist()
    p = np.clip(np.asarray(marginals, float), 1e-4, 1 - 1e-4)
    t = np.array([nd.inv_cdf(float(x)) for x in p])
    iu = np.triu_indices(k, 1)
    ti, tj = t[iu[0]], t[iu[1]]
    pi, pj = p[iu[0]], p[iu[1]]
    target = np.asarray(joint, float)[iu]
    lo_b = np.maximum(0.0, pi + pj - 1.0)
    hi_b = np.minimum(pi, pj)
    target = np.clip(target, lo_b, hi_b)
    lo = np.full(target.shape, -_RHO_MAX)
    hi = np.full(target.shape, _RHO_MAX)
    for _ in range(40):  # bisection: the CDF is increasing in rho
        mid = (lo + hi) / 2
        val = bivariate_normal_cdf(ti, tj, mid)
        up = val < target
        lo = np.where(up, mid, lo)
        hi = np.where(up, hi, mid)
    rho = (lo + hi) / 2
    c = np.eye(k)
    c[iu] = rho
    c[(iu[1], iu[0])] = rho
    return t, _nearest_correlation(c)


def refit() -> dict:
    """Fit to ``celeba_attribute_stats.json`` and write ``synthfaces_latent_corr.json``."""
    m, j = load_stats()
    _, corr = fit_latent_correlation(m, j)
    obj = {
        "description": (
            "DERIVED DATA: latent correlation matrix of the dichotomised Gaussian that "
            "paw_ray.data.labels samples SynthFaces labels from; fitted by "
            "paw_ray.data.labels.fit_latent_correlation to celeba_attribute_stats.json "
            "(regenerate: python -m paw_ray.data.labels --refit)"
        ),
        "stats_sha256": _stats_digest(m, j),
        "attributes": list(ATTRIBUTES),
        "latent_correlation": np.round(corr, 6).tolist(),
    }
    tmp = LATENT_FILE + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=None, separators=(",", ":"))
        f.write("\n")
    os.replace(tmp, LATENT_FILE)
    latent_model.cache_clear()
    return obj


# --------------------------------------------------------------------------- sampling

@lru_cache(maxsize=1)
def latent_model() -> tuple[np.ndarray, np.ndarray]:
    """``(thresholds[40], cholesky_factor[40, 40])`` of the committed latent model."""
    m, j = load_stats()
    with open(LATENT_FILE, encoding="utf-8") as f:
        obj = json.load(f)
    if obj.get("stats_sha256") != _stats_digest(m, j):
        raise ValueError(
            f"{LATENT_FILE} was fitted to other statistics than {STATS_FILE}; "
            "regenerate it with `python -m paw_ray.data.labels --refit`"
        )
    corr = np.asarray(obj["latent_correlation"], dtype=np.float64)
    nd = NormalDist()
    t = np.array([nd.inv_cdf(float(x)) for x in np.clip(m, 1e-4, 1 - 1e-4)])
    return t, np.linalg.cholesky(corr)


def sample_labels(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` label vectors, ``int8[n, 40]`` in {0, 1}, CelebA order, following CelebA's
    marginal and pairwise statistics."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    t, chol = latent_model()
    z = rng.standard_normal((n, NUM_ATTRIBUTES)) @ chol.T
    return (z < t).astype(np.int8)


def apply_label_noise(rng: np.random.Generator, labels: np.ndarray, rate: float) -> np.ndarray:
    """A copy of ``labels`` with each entry flipped independently with probability ``rate``."""
    if not 0.0 <= rate < 0.5:
        raise ValueError(f"label noise rate must be in [0, 0.5), got {rate}")
    labels = np.asarray(labels, dtype=np.int8)
    flip = rng.random(labels.shape) < rate
    return np.where(flip, 1 - labels, labels).astype(np.int8)


def _main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refit", action="store_true", help=f"rewrite {os.path.basename(LATENT_FILE)}")
    args = ap.parse_args()
    if args.refit:
        refit()
        print(f"wrote {LATENT_FILE}")
    m, j = load_stats()
    lab = sample_labels(np.random.default_rng(0), 100_000).astype(np.float64)
    print("max |marginal error| over 100k samples:", float(np.abs(lab.mean(0) - m).max()))
    print("max |joint error| over 100k samples:", float(np.abs(lab.T @ lab / len(lab) - j).max()))


if __name__ == "__main__":
    _main()
