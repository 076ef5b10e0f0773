"""The multivariate (domain-classifier) drift test: its null, the correlation flip, its inputs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitor.check.multivariate import MultivariateError, domain_classifier_test, prepare_domain_reference, reference_vs_reference

# odd names on purpose
NUM = ["f 0", "f.1", "2f", "größe", "f4", "f5"]
CAT = ["segment"]


def rows(n: int, rng: np.random.Generator, rho: float = 0.5) -> pd.DataFrame:
    """N(0, 1) features with corr(f 0, f.1) = rho, and a 3-level categorical; the marginals never
    depend on rho."""
    x = rng.normal(size=(n, len(NUM)))
    x[:, 1] = rho * x[:, 0] + math.sqrt(1 - rho**2) * x[:, 1]
    frame = pd.DataFrame(x, columns=NUM)
    frame["segment"] = rng.choice(np.array(["a", "b", "c"], dtype=object), n, p=[0.5, 0.3, 0.2])
    frame["prediction"] = (frame["f5"] > 0).astype("int64")
    return frame


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return rows(30_000, np.random.default_rng(0))


@pytest.fixture(scope="module")
def domain(reference):
    return prepare_domain_reference(reference, NUM, CAT)


@pytest.mark.parametrize("learner", ["hgb", "logistic"])
def test_reference_against_itself_gives_uniform_p_values(domain, learner):
    """The null the p-value rests on: disjoint reference samples are exchangeable, so p is
    uniform (a k-fold Stouffer combination is not: its fold AUROCs are correlated)."""
    pvalues = np.array([reference_vs_reference(domain, 400, seed, learner=learner, explain_below=0).p_value for seed in range(120)])
    assert 0.35 < pvalues.mean() < 0.65
    assert np.mean(pvalues < 0.05) <= 0.09
    assert np.mean(pvalues < 0.25) <= 0.33


def test_correlation_flip_alerts_within_three_windows_and_per_column_tests_do_not(tmp_path: Path, reference, domain):
    from monitor.check.drift import check_drift, prepare_reference
    from monitor.core.config import parse_config

    columns = {"timestamp": "ts", "id": "id", "prediction": "prediction", "numerical": NUM, "categorical": CAT}
    model = parse_config({"models": [{"name": "m", "source": {"type": "files", "path": "logs/*.parquet"}, "columns": columns,
                                      "task": "binary_classification"}]}, base_dir=tmp_path).models[0]
    prepared = prepare_reference(reference, model, "1")
    rng = np.random.default_rng(1)
    flagged = []
    for w in range(3):
        window = rows(2_000, rng, rho=-0.5)
        result = domain_classifier_test(domain, window, seed=w)
        # held in a family with every feature (Bonferroni, the strictest case) at a 1% budget
        flagged.append(result.drifted(alpha=0.01 / (len(NUM) + len(CAT) + 1)))
        assert {c.feature for c in result.contributions[:2]} == {"f 0", "f.1"}
        assert result.auroc > 0.6
        outcome = check_drift(prepared, window, model)
        assert outcome.drifted_features == [] and not outcome.dataset_drifted
    assert sum(flagged[:3]) >= 2  # the default policy's 2 of 3 windows


def test_no_contributions_are_computed_without_drift(domain):
    result = domain_classifier_test(domain, rows(1_000, np.random.default_rng(2)), seed=0)
    assert result.p_value > 0.01 and result.contributions == ()
    assert not result.drifted(alpha=0.01)


def test_changes_per_column_tests_can_see_are_seen_too(domain):
    rng = np.random.default_rng(3)
    shifted = rows(2_000, rng)
    shifted["f4"] += 0.4
    result = domain_classifier_test(domain, shifted, seed=1)
    assert result.p_value < 1e-4 and result.contributions[0].feature == "f4"
    mix = rows(2_000, rng)
    mix["segment"] = rng.choice(np.array(["a", "b", "c"], dtype=object), 2_000, p=[0.3, 0.3, 0.4])
    assert domain_classifier_test(domain, mix, seed=2, learner="logistic").contributions[0].feature == "segment"


def test_odd_values_are_handled_not_fatal(domain):
    rng = np.random.default_rng(4)
    window = rows(1_000, rng)
    window.loc[window.index[:5], "f 0"] = np.inf
    window.loc[window.index[5:10], "f.1"] = np.nan
    window.loc[window.index[10:15], "segment"] = None
    result = domain_classifier_test(domain, window, seed=0)
    assert 0 <= result.p_value <= 1
    unseen = rows(1_000, rng).assign(segment="brand new level")
    assert domain_classifier_test(domain, unseen, seed=0).p_value < 1e-6  # a new category is drift


def test_sizes_are_capped_and_balanced(domain):
    result = domain_classifier_test(domain, rows(8_000, np.random.default_rng(5)), max_rows=3_000, seed=0)
    assert result.window_rows == 3_000 and result.reference_rows == 3_000


def test_clear_errors(domain, reference):
    rng = np.random.default_rng(6)
    with pytest.raises(MultivariateError, match="lacks feature columns"):
        domain_classifier_test(domain, rows(500, rng).drop(columns="größe"))
    with pytest.raises(MultivariateError, match="at least 50"):
        domain_classifier_test(domain, rows(20, rng))
    with pytest.raises(MultivariateError, match="unknown learner"):
        domain_classifier_test(domain, rows(500, rng), learner="xgboost")
    with pytest.raises(MultivariateError, match="non-numeric"):
        domain_classifier_test(domain, rows(500, rng).assign(f4="x"))
    with pytest.raises(MultivariateError, match="lacks feature columns"):
        prepare_domain_reference(reference, [*NUM, "missing"], CAT)


def test_a_small_reference_limits_the_tested_rows(reference):
    small = prepare_domain_reference(reference.iloc[:3_000], NUM, CAT)
    result = domain_classifier_test(small, rows(2_000, np.random.default_rng(7)), seed=0)
    assert result.window_rows == 300  # a tenth of the reference: the p-value stays honest
    with pytest.raises(MultivariateError, match="needs at least 500"):
        domain_classifier_test(prepare_domain_reference(reference.iloc[:400], NUM, CAT), rows(2_000, np.random.default_rng(8)))


def test_the_compact_reference_decodes_to_exactly_the_encoded_rows(reference):
    odd = reference.iloc[:2_000].copy()
    odd.loc[odd.index[:5], "f 0"] = np.inf
    odd.loc[odd.index[5:10], "f.1"] = np.nan
    odd.loc[odd.index[10:15], "segment"] = None
    finite = odd["f 0"].to_numpy()
    shared = np.sort(finite[np.isfinite(finite)])  # what the drift tests hold for the column
    domain = prepare_domain_reference(odd, NUM, CAT, tables={"f 0": shared})

    np.testing.assert_array_equal(domain.decode(np.arange(domain.rows)), domain.encode(odd))
    assert domain.tables[0] is shared  # shared with the drift tests, not copied
    assert domain.positions.dtype == np.uint16 and domain.codes.dtype == np.uint8
    other = prepare_domain_reference(odd, NUM, CAT, tables={"f 0": shared[::2]})  # misses values: its own table
    np.testing.assert_array_equal(other.decode(np.arange(other.rows)), domain.encode(odd))
