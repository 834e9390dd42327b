"""SynthFaces labels follow CelebA's statistics (paw_ray/data/celeba_attribute_stats.json)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from paw_ray.attributes import ATTRIBUTES, attribute_index
from paw_ray.data import labels as L


@pytest.fixture(scope="module")
def sample():
    return L.sample_labels(np.random.default_rng(12345), 10_000)


def test_shape_dtype_values(sample):
    assert sample.shape == (10_000, 40)
    assert sample.dtype == np.int8
    assert set(np.unique(sample)) <= {0, 1}
    assert L.sample_labels(np.random.default_rng(0), 0).shape == (0, 40)
    with pytest.raises(ValueError, match="n must be"):
        L.sample_labels(np.random.default_rng(0), -1)


def test_deterministic_for_a_seed():
    a = L.sample_labels(np.random.default_rng(7), 500)
    b = L.sample_labels(np.random.default_rng(7), 500)
    c = L.sample_labels(np.random.default_rng(8), 500)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_marginals_within_002_of_celeba(sample):
    m, _ = L.load_stats()
    err = np.abs(sample.mean(axis=0) - m)
    worst = int(np.argmax(err))
    assert err.max() <= 0.02, f"{ATTRIBUTES[worst]}: {sample.mean(axis=0)[worst]:.4f} vs {m[worst]:.4f}"


def test_strongest_pairwise_dependencies_keep_their_sign(sample):
    m, j = L.load_stats()
    dep = j - np.outer(m, m)
    s = sample.astype(np.float64)
    ms = s.mean(axis=0)
    dep_s = s.T @ s / len(s) - np.outer(ms, ms)
    iu = np.triu_indices(40, 1)
    order = np.argsort(-np.abs(dep[iu]))[:25]
    for k in order:
        a, b = iu[0][k], iu[1][k]
        assert np.sign(dep_s[a, b]) == np.sign(dep[a, b]), (ATTRIBUTES[a], ATTRIBUTES[b], dep[a, b], dep_s[a, b])
    male, makeup, lipstick = (attribute_index(n) for n in ("Male", "Heavy_Makeup", "Wearing_Lipstick"))
    assert dep_s[male, makeup] < -0.1
    assert dep_s[makeup, lipstick] > 0.1


def test_stats_file_is_the_shared_one():
    with open(L.STATS_FILE, encoding="utf-8") as f:
        obj = json.load(f)
    assert obj["attributes"] == list(ATTRIBUTES)


def test_committed_latent_matrix_is_current_and_valid():
    """The derived matrix in synthfaces_latent_corr.json is what fitting gives today."""
    m, j = L.load_stats()
    _, fitted = L.fit_latent_correlation(m, j)
    with open(L.LATENT_FILE, encoding="utf-8") as f:
        committed = np.asarray(json.load(f)["latent_correlation"])
    assert committed.shape == (40, 40)
    assert np.allclose(committed, committed.T)
    assert np.allclose(np.diag(committed), 1.0, atol=1e-5)
    assert np.linalg.eigvalsh(committed).min() > 0
    assert np.abs(committed - fitted).max() < 1e-4


def test_bivariate_normal_cdf_known_values():
    # independent, and rho = 0.5 at the origin: 1/4 + asin(0.5)/(2 pi) = 1/3
    assert L.bivariate_normal_cdf(0.0, 0.0, 0.0) == pytest.approx(0.25, abs=1e-9)
    assert L.bivariate_normal_cdf(0.0, 0.0, 0.5) == pytest.approx(1 / 3, abs=1e-7)
    assert L.bivariate_normal_cdf(0.0, 0.0, -0.5) == pytest.approx(1 / 6, abs=1e-7)


def test_label_noise_flips_at_the_rate():
    clean = L.sample_labels(np.random.default_rng(1), 2_000)
    same = L.apply_label_noise(np.random.default_rng(2), clean, 0.0)
    assert np.array_equal(same, clean)
    noisy = L.apply_label_noise(np.random.default_rng(2), clean, 0.2)
    assert noisy.dtype == np.int8 and set(np.unique(noisy)) <= {0, 1}
    assert abs((noisy != clean).mean() - 0.2) < 0.01
    assert not np.shares_memory(noisy, clean)
    for bad in (0.5, -0.01, 1.0):
        with pytest.raises(ValueError, match="label noise rate"):
            L.apply_label_noise(np.random.default_rng(0), clean, bad)
