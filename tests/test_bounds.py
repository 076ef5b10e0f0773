"""Paired bootstrap bounds (retrain.bounds): what the promotion gates decide on."""

from __future__ import annotations

import numpy as np
import pytest

from retrain.bounds import paired_gain, score


def flip(y: np.ndarray, rows: np.ndarray) -> np.ndarray:
    out = y.copy()
    out[rows] = 1 - out[rows]
    return out


def test_the_estimate_is_the_metric_difference_and_lies_between_its_bounds():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1500)
    a, b = flip(y, rng.random(1500) < 0.15), flip(y, rng.random(1500) < 0.2)
    gain = paired_gain("accuracy", y, a, b, confidence=0.95)
    assert gain.estimate == pytest.approx(score("accuracy", y, a) - score("accuracy", y, b))
    assert gain.lower < gain.estimate < gain.upper and gain.rows == 1500
    wider = paired_gain("accuracy", y, a, b, confidence=0.99)
    assert wider.lower < gain.lower and wider.upper > gain.upper


def test_identical_predictions_have_no_spread():
    y = np.arange(100) % 2
    gain = paired_gain("accuracy", y, y.copy(), y.copy(), confidence=0.95)
    assert (gain.estimate, gain.lower, gain.upper) == (0.0, 0.0, 0.0)


def test_a_handful_of_disagreeing_rows_gives_a_finite_tight_bound():
    # An ONNX conversion that flips 3 boundary rows of 2,000 the wrong way: most resamples
    # hold one or two of them, some none; the bound must stay near 3/2000, not run off.
    y = np.arange(2000) % 2
    served = flip(y, np.array([5, 700, 1400]))
    gain = paired_gain("accuracy", y, served, y.copy(), confidence=0.95)
    assert gain.estimate == pytest.approx(-0.0015)
    assert -0.006 < gain.lower < gain.estimate and np.isfinite(gain.upper)


def test_rmse_bounds_match_a_brute_force_bootstrap():
    rng = np.random.default_rng(3)
    y = rng.normal(size=1000)
    a, b = y + rng.normal(size=1000) * 0.5, y + rng.normal(size=1000) * 0.6
    gain = paired_gain("rmse", y, a, b, confidence=0.95)
    picked = rng.integers(0, 1000, size=(2000, 1000))
    brute = np.sqrt(((b - y) ** 2)[picked].mean(axis=1)) - np.sqrt(((a - y) ** 2)[picked].mean(axis=1))
    assert gain.estimate == pytest.approx(np.sqrt(np.mean((b - y) ** 2)) - np.sqrt(np.mean((a - y) ** 2)))
    assert gain.lower == pytest.approx(np.quantile(brute, 0.05), abs=0.004)
    assert gain.upper == pytest.approx(np.quantile(brute, 0.95), abs=0.004)


def test_a_variant_at_the_budget_passes_about_as_often_as_the_confidence_allows():
    """1,000-row holdouts where a variant disagrees with the uncompressed model on 10 % of the
    rows and loses exactly the 1-point budget: a 95% gate should pass ~5 % of them."""
    rng = np.random.default_rng(7)
    p = np.array([0.055, 0.045, 0.9])  # variant-only wrong, variant-only right, agree
    passed = 0
    for _ in range(400):
        kind = rng.choice(3, size=1000, p=p)
        y = np.ones(1000, dtype=int)
        uncompressed, variant = (kind != 1).astype(int), (kind != 0).astype(int)
        passed += -paired_gain("accuracy", y, variant, uncompressed, confidence=0.95).lower <= 0.01
    assert 0.02 <= passed / 400 <= 0.09
