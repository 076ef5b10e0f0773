"""Calibrated drift tests: vectorised statistics equal Evidently's, p-values hold their level
under no drift, and the family verdict (monitor.check.drift) finds one drifted feature of 20."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wasserstein_distance

from monitor.check import stats
from monitor.check.calibrate import NullCache, bucket, p_value
from monitor.check.drift import DriftError, benjamini_hochberg, check_drift, prepare_reference
from monitor.core.config import parse_config

ZIPF = np.arange(1, 51) ** -1.3
ZIPF /= ZIPF.sum()
LEVELS = np.array([f"z{k}" for k in range(50)], dtype=object)


def numeric(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    return {
        "normal": lambda: rng.normal(3.0, 2.0, n),
        "lognormal": lambda: rng.lognormal(0.0, 1.0, n) * 1e4,
        "poisson": lambda: rng.poisson(2.0, n).astype(float),
        "zero_inflated": lambda: np.where(rng.random(n) < 0.8, 0.0, rng.gamma(2.0, 3.0, n)),
        "binary": lambda: (rng.random(n) < 0.1).astype(float),
        "tiny_scale": lambda: rng.normal(0.0, 1e-4, n),
    }[kind]()


def evidently(reference: pd.Series, current: pd.Series, kind: str, method: str) -> float:
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.core import ColumnType

    column_type = ColumnType.Numerical if kind == "numerical" else ColumnType.Categorical
    test = get_stattest(reference, current, column_type, method)
    return float(test(reference, current, column_type, 0.1).drift_score)


@pytest.mark.parametrize("kind", ["normal", "lognormal", "poisson", "zero_inflated", "binary", "tiny_scale"])
@pytest.mark.parametrize("n", [50, 1000, 30_000])
def test_normed_wasserstein_equals_evidentlys(kind: str, n: int) -> None:
    rng = np.random.default_rng(n)
    reference, window = numeric(kind, 20_000, rng), numeric(kind, n, rng) * 1.01
    ours = stats.normed_wasserstein(stats.prepare_numerical(reference), window)

    assert ours == pytest.approx(evidently(pd.Series(reference), pd.Series(window), "numerical", "wasserstein"), rel=1e-9)


def test_bootstrap_draws_score_like_scipy() -> None:
    rng = np.random.default_rng(3)
    ref = stats.prepare_numerical(rng.poisson(3.0, 5000).astype(float))
    idx = np.sort(rng.integers(0, ref.rows, (4, 300)), axis=1)
    vectorised = stats._w1_sorted(ref, ref.sorted[idx], ref.last_le()[idx])

    assert vectorised == pytest.approx([wasserstein_distance(ref.sorted, ref.sorted[row]) for row in idx], rel=1e-9)


def test_jensenshannon_equals_evidentlys_with_unseen_categories() -> None:
    rng = np.random.default_rng(4)
    reference = pd.Series(LEVELS[rng.choice(50, 20_000, p=ZIPF)]).astype("category")
    window = pd.Series(LEVELS[rng.choice(50, 700, p=ZIPF[::-1])], dtype=object)
    window.iloc[::9] = "brand-new"
    window = window.astype("category")
    ref = stats.prepare_categorical(reference)
    counts, unseen = stats.window_categories(ref, window)

    assert counts.unseen == len(window.iloc[::9])
    ours = stats.jensenshannon(ref, counts, unseen)
    assert ours == pytest.approx(evidently(reference, window, "categorical", "jensenshannon"), rel=1e-9)


@pytest.mark.parametrize("kind", ["normal", "zero_inflated", "binary", "zipf"])
def test_p_values_hold_their_level_with_no_drift(kind: str) -> None:
    """200 seeded null windows of 300 rows against one 20,000-row reference."""
    rng = np.random.default_rng(11)
    cache = NullCache("v1")
    if kind == "zipf":
        ref = stats.prepare_categorical(pd.Series(LEVELS[rng.choice(50, 20_000, p=ZIPF)]))
        null = cache.null("c", 300, ref.rows, lambda n, b, g: stats.bootstrap_jensenshannon(ref, n, b, g))

        def score() -> float:
            counts, unseen = stats.window_categories(ref, pd.Series(LEVELS[rng.choice(50, 300, p=ZIPF)]))
            return stats.jensenshannon(ref, counts, unseen)

        tail = "gamma2"
    else:
        nref = stats.prepare_numerical(numeric(kind, 20_000, rng))
        null = cache.null("c", 300, nref.rows, lambda n, b, g: stats.bootstrap_wasserstein(nref, n, b, g))

        def score() -> float:
            return stats.normed_wasserstein(nref, numeric(kind, 300, rng))

        tail = "lognormal"
    pvalues = np.array([p_value(score(), null, tail) for _ in range(200)])

    assert np.mean(pvalues < 0.05) <= 0.10
    assert np.mean(pvalues < 0.01) <= 0.03
    assert 0.3 < np.mean(pvalues) < 0.7  # not piled up at 1 either: the test has its power


def test_bucket_grid_is_geometric_and_capped() -> None:
    assert [bucket(n) for n in (10, 16, 22, 23, 100, 362, 363, 512, 10_000, 1_000_000)] == [10, 16, 16, 23, 91, 256, 362, 512, 512, 512]


def test_missing_and_novelty_tests() -> None:
    # 10% missing where the reference had none: certain; the reference's own rate: not
    assert stats.missing_p_value(100, 1000, 0, 50_000) < 1e-12
    assert stats.missing_p_value(20, 1000, 1000, 50_000) > 0.3
    # one unseen value in 1,000 rows against 50,000 rows that held all categories: not drift
    rate = stats.novelty_rate(50_000, singletons=0)
    assert rate == pytest.approx(6e-5)
    assert stats.novelty_p_value(1, 1000, rate) > 0.05
    assert stats.novelty_p_value(50, 1000, rate) < 1e-12


def test_benjamini_hochberg() -> None:
    p = np.array([0.2, 0.0001, 0.004, 0.035, 0.9])
    assert benjamini_hochberg(p, 0.05).tolist() == [False, True, True, False, False]
    assert benjamini_hochberg(p, 0.0001).tolist() == [False, False, False, False, False]
    assert benjamini_hochberg(np.array([]), 0.05).tolist() == []


# --- the family verdict on a 20-feature model -------------------------------------------------

NUM = [f"n{i}" for i in range(14)]
CAT = [f"c{i}" for i in range(6)]
KINDS = ["normal", "lognormal", "poisson", "zero_inflated", "binary", "normal", "lognormal"] * 2


def model(tmp_path: Path, **drift):
    columns = {"timestamp": "ts", "id": "id", "prediction": "prediction", "numerical": NUM, "categorical": CAT}
    raw = {"name": "m", "source": {"type": "files", "path": "x/*.parquet"}, "columns": columns,
           "task": "binary_classification", "window": {"min_rows": 100}, "drift": drift}
    return parse_config({"models": [raw]}, base_dir=tmp_path).models[0]


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {c: numeric(k, n, rng) for c, k in zip(NUM, KINDS)}
    data["n4"] = np.full(n, 7.0)  # a constant column
    for i, c in enumerate(CAT):
        data[c] = LEVELS[rng.choice(50, n, p=ZIPF)] if i % 2 else np.array(["a", "b", "c"], dtype=object)[rng.choice(3, n, p=[0.6, 0.3, 0.1])]
    return pd.DataFrame(data)


@pytest.fixture(scope="module")
def twenty(tmp_path_factory):
    m = model(tmp_path_factory.mktemp("m"))
    return m, prepare_reference(frame(20_000, 1), m, "1")


def test_one_drifted_feature_of_twenty_is_dataset_drift(twenty) -> None:
    m, reference = twenty
    window = frame(1000, 2)
    window["n0"] = window["n0"] + 0.2 * 2.0  # +0.2 sd

    outcome = check_drift(reference, window, m)

    assert outcome.drifted_features == ["n0"] and outcome.dataset_drifted
    assert outcome.drifted_share == pytest.approx(1 / 20)
    n0 = outcome.features[0]
    assert n0.drifted_by == ("distribution",) and n0.p_value < 1e-5


def test_no_drift_no_verdict_over_seeded_windows(twenty) -> None:
    m, reference = twenty
    drifted = [check_drift(reference, frame(300, seed), m).dataset_drifted for seed in range(100, 130)]

    assert sum(drifted) <= 1  # budget 0.5% a window: 30 windows expect 0.15


def test_constant_reference_column_gets_a_novelty_test(twenty) -> None:
    m, reference = twenty
    same = check_drift(reference, frame(1000, 3), m)
    by_name = {f.feature: f for f in same.features}
    assert not by_name["n4"].drifted and by_name["n4"].score == 0.0 and by_name["n4"].unseen_share == 0.0

    window = frame(1000, 3)
    window.loc[window.index[:30], "n4"] = 7.0001  # a shift of 1e-4: Evidently's score 0.1 exactly
    moved = {f.feature: f for f in check_drift(reference, window, m).features}["n4"]
    assert moved.drifted and moved.drifted_by == ("novelty",) and moved.unseen_share == pytest.approx(0.03)


def test_nan_appearing_is_missing_drift_and_inf_counts_as_missing(twenty) -> None:
    m, reference = twenty
    window = frame(1000, 4)
    window.loc[window.index[::10], "n1"] = np.nan
    window.loc[window.index[::10], "n2"] = np.inf

    by_name = {f.feature: f for f in check_drift(reference, window, m).features}

    for column in ("n1", "n2"):
        assert by_name[column].drifted_by == ("missing",)
        assert by_name[column].missing_share == pytest.approx(0.1)


def test_effect_floor_ignores_significant_but_tiny_changes(tmp_path) -> None:
    floored = model(tmp_path, min_effect={"numerical": 0.5})
    reference = prepare_reference(frame(20_000, 1), floored, "1")
    window = frame(1000, 2)
    window["n0"] = window["n0"] + 0.2 * 2.0

    outcome = check_drift(reference, window, floored)

    assert outcome.features[0].p_value < 1e-5 and not outcome.dataset_drifted


def test_dataset_rule_share_and_extra_hypotheses(tmp_path) -> None:
    shared = model(tmp_path, dataset_rule="share", dataset_share=0.1)
    reference = prepare_reference(frame(20_000, 1), shared, "1")
    window = frame(1000, 2)
    window["n0"] = window["n0"] + 0.4

    assert not check_drift(reference, window, shared).dataset_drifted  # 1 of 20 < 10%
    outcome = check_drift(reference, frame(1000, 2), model(tmp_path), extra={"multivariate": 1e-9})
    assert outcome.extra_drifted == ("multivariate",) and outcome.dataset_drifted
    # The multivariate test is a whole-window signal: it drifts the window under the share rule too.
    joint = check_drift(reference, frame(1000, 2), shared, extra={"multivariate": 1e-9})
    assert joint.extra_drifted == ("multivariate",) and joint.dataset_drifted


def test_reference_too_small_says_how_big_it_must_be(tmp_path) -> None:
    with pytest.raises(DriftError, match=r"has 400 rows; drift tests need at least 500 \(5 x window.min_rows 100\).*at most 80"):
        prepare_reference(frame(400, 1), model(tmp_path), "1")


def test_a_retrains_too_small_reference_is_topped_up_from_the_previous_champions(tmp_path) -> None:
    from monitor.service.reference import Loaded, References
    from retrain.registry import Champion

    m = model(tmp_path)
    config = parse_config({"models": [{"name": "m", "source": {"type": "files", "path": "x/*.parquet"},
                                       "columns": {"timestamp": "ts", "id": "id", "prediction": "prediction",
                                                   "numerical": NUM, "categorical": CAT},
                                       "task": "binary_classification", "window": {"min_rows": 100}}]}, base_dir=tmp_path)
    old = prepare_reference(frame(2000, 1), m, "3", reload=lambda: frame(2000, 1))
    champion = Champion("m", "4", "run", "models:/m/4", None, "accuracy", 0.9, promoted_over="3")
    small = frame(300, 2)

    topped = References(config)._topped_up(m, small, champion, Loaded(old, None))

    assert len(topped) == 500  # 5 x min_rows
    pd.testing.assert_frame_equal(topped.iloc[:300], small)
    prepare_reference(topped, m, "4")  # now large enough
    large = frame(600, 2)
    assert References(config)._topped_up(m, large, champion, Loaded(old, None)) is large


def test_null_samples_persist_per_version_and_are_redrawn_for_other_values(tmp_path) -> None:
    rng = np.random.default_rng(5)
    nref = stats.prepare_numerical(rng.normal(size=5000))
    draws: list[int] = []

    def draw(n: int, b: int, g: np.random.Generator) -> np.ndarray:
        draws.append(n)
        return stats.bootstrap_wasserstein(nref, n, b, g)

    def once(version: str, fingerprint: str, directory: Path = tmp_path) -> np.ndarray:
        cache = NullCache(version, directory, {"x": fingerprint})
        sample = cache.null("x", 3000, nref.rows, draw)
        cache.flush()  # as check_drift does after its columns
        return sample

    first = once("7", "values-a")
    again = once("7", "values-a")  # a restart: read back

    assert draws == [512] and np.array_equal(first, again)
    once("7", "values-b")  # same version, other values
    once("8", "values-a")  # another version
    assert draws == [512, 512, 512]
    alone = tmp_path / "alone"
    once("9", "values-a", alone)
    [stored] = alone.iterdir()
    stored.write_bytes(b"damaged")
    once("9", "values-a", alone)  # unreadable: drawn again, no error
    assert len(draws) == 5


def test_a_second_process_reads_the_null_samples_back_from_the_state_directory(tmp_path, monkeypatch) -> None:
    from monitor.service.reference import References

    frame(2_000, 1).to_parquet(tmp_path / "reference.parquet", index=False)
    raw = {"name": "m", "source": {"type": "files", "path": "x/*.parquet"}, "reference": "reference.parquet",
           "columns": {"timestamp": "ts", "id": "id", "prediction": "prediction", "numerical": NUM, "categorical": CAT},
           "task": "binary_classification", "window": {"min_rows": 100}}
    config = parse_config({"models": [raw]}, base_dir=tmp_path)  # state: tmp_path/driftd-state.db
    m = config.models[0]
    drawn: list[int] = []
    bootstrap = stats.bootstrap_wasserstein
    monkeypatch.setattr(stats, "bootstrap_wasserstein", lambda *a: drawn.append(a[1]) or bootstrap(*a))
    window = frame(600, 2)

    first = check_drift(References(config).get(m).prepared, window, m)
    assert drawn and list((tmp_path / "nulls").rglob("*.npz"))
    count = len(drawn)
    again = check_drift(References(config).get(m).prepared, window, m)  # a restart, or `driftd check`
    assert len(drawn) == count and [f.p_value for f in again.features] == [f.p_value for f in first.features]
    import pickle

    shipped = pickle.loads(pickle.dumps(References(config).get(m).prepared))  # to an executor's worker: no reload
    assert shipped.reload is None and check_drift(shipped, window, m).features == first.features
