"""Benchmark: label-free quality estimates (CBPE, DLE) and the multivariate drift test.

Sections (all seeded; --seeds sets how many independent worlds each summary averages over):

  cbpe        a binary classifier under covariate shift with delayed labels: per window the
              estimate made before the labels arrived (value and 95% band) against the realized
              value once they did; then the calibrators (auto, isotonic, sigmoid, none) compared for
              six models and two reference sizes (mean absolute error, band coverage).
  dle         a regressor with heteroscedastic noise under covariate shift: estimated vs
              realized MAE and RMSE per window, relative errors over all seeds.
  concept     concept shift (P(y|x) changes): the estimates are wrong; the estimated − realized
              gap that driftd reports once labels arrive.
  flip        every marginal unchanged, one correlation flips: the multivariate test (2-of-3
              windows policy) against driftd's per-column check_drift (monitor/check/drift.py as on
              main) and a per-column KS test with Bonferroni correction (a stand-in for issue 9's
              calibrated tests: any valid per-column test has power = its level here).
  null        false-alarm rate of the multivariate test on undrifted windows of a 20-feature
              mixed model (normal, lognormal, Poisson, zero-inflated, constant, binary,
              3-level and 50-level categoricals, 5% missing) at n = 500, 2,000, 10,000.
  wired       the shipped defaults end to end: driftd's own check (run_check on a files source,
              the reference prepared as the daemon prepares it) on the correlation flip and on a
              binary model with delayed labels, then the policy (monitor.check.policy.decide) over the
              recorded windows: when it alerts, on what, and the estimate it acted on.
  pool        (not run by default: ~10 min) the false-alarm rate conditional on one fixed
              reference as the window's share of it grows: why the tested rows are capped.
  power       detection rate of the learners for several joint changes at n = 2,000.
  cost        seconds (wall and CPU, one thread) per multivariate check at n = 2,000, 5,000,
              10,000 for 10/20/50 features, and per CBPE/DLE estimate.

    python bench/estimation.py [--sections cbpe,dle,concept,flip,wired,null,power,cost,pool]
                               [--seeds 5] [--null-windows 200] [--power-windows 40]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.check.cbpe import fit_cbpe  # noqa: E402
from monitor.check.dle import fit_dle  # noqa: E402
from monitor.check.estimation import estimation_errors  # noqa: E402
from monitor.check.multivariate import domain_classifier_test, prepare_domain_reference  # noqa: E402
from monitor.core.threads import one_thread  # noqa: E402

WINDOW = 2_000
ALPHA = 0.01  # per-window level of the multivariate test (2 of 3 at 1%: ~0.9 false alerts / 30 days at 15 min)
WINDOWS_PER_30_DAYS = 30 * 24 * 4

# --- worlds ------------------------------------------------------------------------------------

BINARY_FEATURES = [f"x{i}" for i in range(6)]
# (window label, mean shift per feature) — covariate shift only: P(y | x) is fixed
BINARY_SHIFTS: list[tuple[str, np.ndarray]] = [
    ("none", np.zeros(6)),
    ("none", np.zeros(6)),
    ("none", np.zeros(6)),
    ("x0 +0.5", np.array([0.5, 0, 0, 0, 0, 0])),
    ("x0 +0.5 x2 -0.5", np.array([0.5, 0, -0.5, 0, 0, 0])),
    ("x0 +1", np.array([1.0, 0, 0, 0, 0, 0])),
    ("x1 +1 x3 +0.5", np.array([0, 1.0, 0, 0.5, 0, 0])),
    ("x0 -1 x4 +1", np.array([-1.0, 0, 0, 0, 1.0, 0])),
    ("all +0.4", np.full(6, 0.4)),
]


def binary_logit(x: np.ndarray, concept: float = 0.0) -> np.ndarray:
    """True log-odds; `concept` moves P(y|x) (the x0 effect weakens, x1's reverses)."""
    return (1.4 - concept) * x[:, 0] - 0.9 * (1 - 2 * concept) * x[:, 1] + 0.7 * x[:, 2] * x[:, 3] + 0.6 * np.sin(2 * x[:, 4]) - 0.4


def binary_rows(n: int, rng: np.random.Generator, shift: np.ndarray | None = None, concept: float = 0.0) -> pd.DataFrame:
    x = rng.normal(size=(n, 6)) + (0 if shift is None else shift)
    y = (rng.random(n) < 1 / (1 + np.exp(-binary_logit(x, concept)))).astype(int)
    frame = pd.DataFrame(x, columns=BINARY_FEATURES)
    frame["target"] = y
    return frame


def classifiers(seed: int) -> dict[str, Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB

    return {
        "hgb": HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=seed),
        "hgb_balanced": HistGradientBoostingClassifier(max_iter=200, class_weight={0: 1, 1: 3}, random_state=seed),  # prior-shifted scores
        "random_forest": RandomForestClassifier(100, min_samples_leaf=3, n_jobs=1, random_state=seed),  # scores pulled to the middle
        "hgb_squared": Squared(HistGradientBoostingClassifier(max_iter=200, random_state=seed)),  # a non-sigmoid distortion
        "logistic": LogisticRegression(max_iter=500),  # misspecified: misses x2*x3 and sin(x4)
        "naive_bayes": GaussianNB(),  # badly calibrated
    }


class Squared:
    """A model whose logged score is its probability squared: monotone, but not a sigmoid of the logit
    (a vendor score or a business transform logged in place of the probability)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def fit(self, x: np.ndarray, y: np.ndarray) -> Squared:
        self.model.fit(x, y)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        p = self.model.predict_proba(x)[:, 1] ** 2
        return np.column_stack([1 - p, p])


def score(model: Any, frame: pd.DataFrame) -> pd.DataFrame:
    proba = model.predict_proba(frame[BINARY_FEATURES].to_numpy())[:, 1]
    out = frame.copy()
    out["probability"] = proba
    out["prediction"] = (proba >= 0.5).astype(int)
    return out


REGRESSION_NUM = ["x0", "x1", "x2"]


def regression_rows(n: int, rng: np.random.Generator, shift: float = 0.0, concept: float = 0.0) -> pd.DataFrame:
    """y = f(x) + noise whose scale grows with |x0| and in segment "c"; `concept` changes f."""
    x0 = rng.normal(shift, 1, n)
    x1 = rng.normal(0, 1, n)
    x2 = rng.uniform(-2, 2, n)
    segment = rng.choice(np.array(["a", "b", "c"], dtype=object), n, p=[0.5, 0.3, 0.2] if shift == 0 else [0.35, 0.3, 0.35])
    scale = (0.4 + 0.6 * np.abs(x0)) * np.where(segment == "c", 1.8, 1.0)
    f = 2 * x0 + np.sin(2 * x1) + 0.5 * x2**2 + concept * (1.5 * x1 + x2)
    return pd.DataFrame({"x0": x0, "x1": x1, "x2": x2, "segment": segment, "target": f + scale * rng.normal(size=n)})


def regression_model(seed: int, rng: np.random.Generator) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    train = regression_rows(20_000, rng)
    return HistGradientBoostingRegressor(max_iter=200, random_state=seed).fit(regression_design(train), train["target"])


def regression_design(frame: pd.DataFrame) -> np.ndarray:
    return np.column_stack([frame[REGRESSION_NUM].to_numpy(), (frame["segment"] == "c").to_numpy(), (frame["segment"] == "b").to_numpy()])


# --- table printing ----------------------------------------------------------------------------


def table(rows: list[dict[str, Any]], title: str) -> None:
    print(f"\n## {title}\n")
    if not rows:
        print("(no rows)")
        return
    headers = list(rows[0])
    cells = [[_fmt(r[h]) for h in headers] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for c in cells:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(c, widths)) + " |")
    sys.stdout.flush()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.1e}"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


# --- cbpe ----------------------------------------------------------------------------------------


@dataclass
class Scored:
    metric: str
    estimated: float
    lower: float
    upper: float
    realized: float

    @property
    def error(self) -> float:
        return self.estimated - self.realized

    @property
    def covered(self) -> bool:
        return self.lower <= self.realized <= self.upper


def cbpe_world(seed: int, model_name: str, calibrators: list[str], shifts: list[tuple[str, np.ndarray]], concept: float = 0.0,
               n: int = WINDOW, reference_rows: tuple[int, ...] = (10_000,)) -> dict[tuple[str, int], list[tuple[str, list[Scored]]]]:
    """One seeded world: a model trained on 20k rows, a labelled reference of validation rows,
    windows drawn with the given shifts; for each calibrator and reference size, per window the
    estimate made before the labels arrived and the realized value after."""
    rng = np.random.default_rng(seed)
    model = classifiers(seed)[model_name].fit(*_xy(binary_rows(20_000, rng)))
    reference = score(model, binary_rows(max(reference_rows), rng))  # validation rows, not training rows
    windows = [(label, score(model, binary_rows(n, rng, shift, concept))) for label, shift in shifts]
    out = {}
    for calibrator in calibrators:
        for rows in reference_rows:
            estimator = fit_cbpe(reference.iloc[:rows], prediction="prediction", probability="probability", target="target", calibrator=calibrator)
            scored = []
            for w, (label, window) in enumerate(windows):
                # the labels have not arrived: estimate from prediction and probability only
                estimated = estimator.estimate(window.drop(columns="target"), seed=w)
                realized = estimator.realized(window)  # later, when they have
                scored.append((label, [Scored(e.metric, e.value, e.lower, e.upper, realized[e.metric]) for e in estimated.estimates]))
            out[(calibrator, rows)] = scored
    return out


def _xy(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return frame[BINARY_FEATURES].to_numpy(), frame["target"].to_numpy()


def section_cbpe(seeds: int) -> None:
    rows = []
    for label, scored in cbpe_world(0, "hgb", ["auto"], BINARY_SHIFTS)[("auto", 10_000)]:
        row: dict[str, Any] = {"window": len(rows) + 1, "covariate shift": label}
        for s in scored:
            row[f"{s.metric} est [band]"] = f"{s.estimated:.3f} [{s.lower:.3f}, {s.upper:.3f}]"
            row[f"{s.metric} real"] = s.realized
        rows.append(row)
    table(rows, f"CBPE per window (seed 0, HistGradientBoosting, auto calibrator, 10k reference rows, n = {WINDOW}; estimate made before labels, realized after)")

    calibrators = ["auto", "isotonic", "sigmoid", "none"]
    sizes = (2_000, 10_000)
    summary = []
    for model_name in classifiers(0):
        worlds = [cbpe_world(seed, model_name, calibrators, BINARY_SHIFTS, reference_rows=sizes) for seed in range(seeds)]
        for calibrator in calibrators:
            for size in sizes:
                scored = [s for world in worlds for _, ss in world[(calibrator, size)] for s in ss]
                row = {"model": model_name, "calibrator": calibrator, "reference": size}
                for metric in ("accuracy", "f1", "roc_auc"):
                    part = [s for s in scored if s.metric == metric]
                    row[f"{metric} MAE"] = float(np.mean([abs(s.error) for s in part]))
                    row[f"{metric} max"] = float(np.max([abs(s.error) for s in part]))
                    row[f"{metric} in band"] = f"{np.mean([s.covered for s in part]):.0%}"
                summary.append(row)
    table(summary, f"CBPE estimated − realized over {seeds} seeds x {len(BINARY_SHIFTS)} windows (n = {WINDOW}; 3 unshifted, 6 covariate-shifted; band 95%)")
    means = {}
    for row in summary:
        key = (row["calibrator"], row["reference"])
        means.setdefault(key, []).append(np.mean([row[f"{m} MAE"] for m in ("accuracy", "f1", "roc_auc")]))
    table([{"calibrator": c, "reference": r, "MAE averaged over models and metrics": float(np.mean(v)), "worst model": float(np.max(v))}
           for (c, r), v in means.items()], "CBPE calibrators compared")


def _concept_row(task: str, concept: float, scored: list[Any], metrics: tuple[str, ...]) -> dict[str, Any]:
    """One concept-shift row: mean estimate, realized value, gap and band coverage per metric."""
    row: dict[str, Any] = {"task": task, "concept shift": concept}
    for metric in metrics:
        part = [s for s in scored if s.metric == metric]
        row[f"{metric} est"] = float(np.mean([s.estimated for s in part]))
        row[f"{metric} real"] = float(np.mean([s.realized for s in part]))
        row[f"{metric} gap"] = float(np.mean([s.error for s in part]))
        row[f"{metric} in band"] = f"{np.mean([s.covered for s in part]):.0%}"
    return row


def section_concept(seeds: int) -> None:
    rows = []
    for concept in (0.0, 0.25, 0.5):
        scored = [s for seed in range(seeds) for _, ss in cbpe_world(seed, "hgb", ["auto"], BINARY_SHIFTS[:4], concept=concept)[("auto", 10_000)] for s in ss]
        rows.append(_concept_row("binary (cbpe)", concept, scored, ("accuracy", "roc_auc")))
    table(rows, f"Concept shift, binary: x0's effect weakens and x1's reverses by the factor shown; {seeds} seeds x 4 windows, n = {WINDOW}")
    rows = []
    for concept in (0.0, 0.5, 1.0):
        scored = [s for seed in range(seeds) for s in dle_world(seed, [0.0, 0.5], concept=concept)]
        rows.append(_concept_row("regression (dle)", concept, scored, ("mae", "rmse")))
    table(rows, f"Concept shift, regression: f gains concept·(1.5·x1 + x2); {seeds} seeds x 2 windows, n = {WINDOW}")

    # what driftd says once labels arrive: estimation_errors on the labelled rows of one window
    rng = np.random.default_rng(0)
    model = classifiers(0)["hgb"].fit(*_xy(binary_rows(20_000, rng)))
    estimator = fit_cbpe(score(model, binary_rows(10_000, rng)), prediction="prediction", probability="probability", target="target")
    rows = []
    for concept in (0.0, 0.5):
        window = score(model, binary_rows(WINDOW, rng, concept=concept))
        window.loc[window.index[WINDOW // 2 :], "target"] = np.nan  # half the labels have arrived
        for gap in estimation_errors(estimator, window):
            rows.append({"concept shift": concept, "metric": gap.metric, "estimated": gap.estimated, "realized": gap.realized,
                         "error": gap.error, "band": f"[{gap.lower:.3f}, {gap.upper:.3f}]", "within band": gap.within_band, "rows": gap.rows})
    table(rows, "estimation_errors() on the labelled half of a window (what the estimation-error metric will export)")


# --- dle -----------------------------------------------------------------------------------------


def dle_world(seed: int, shifts: list[float], concept: float = 0.0, n: int = WINDOW) -> list[Scored]:
    rng = np.random.default_rng(seed)
    model = regression_model(seed, rng)
    reference = regression_rows(10_000, rng)
    reference["prediction"] = model.predict(regression_design(reference))
    estimator = fit_dle(reference, numerical=REGRESSION_NUM, categorical=["segment"], prediction="prediction", target="target", seed=seed)
    out = []
    for w, shift in enumerate(shifts):
        window = regression_rows(n, rng, shift, concept)
        window["prediction"] = model.predict(regression_design(window))
        estimated = estimator.estimate(window.drop(columns="target"), seed=w)
        realized = estimator.realized(window)
        out += [Scored(e.metric, e.value, e.lower, e.upper, realized[e.metric]) for e in estimated.estimates]
    return out


DLE_SHIFTS = [0.0, 0.0, 0.0, 0.25, 0.5, 0.5, 0.75, 1.0]


def section_dle(seeds: int) -> None:
    scored = dle_world(0, DLE_SHIFTS)
    rows = []
    for w, shift in enumerate(DLE_SHIFTS):
        mae, rmse = scored[2 * w], scored[2 * w + 1]
        rows.append({"window": w + 1, "x0 shift (sd) + segment mix": shift,
                     "mae est [band]": f"{mae.estimated:.3f} [{mae.lower:.3f}, {mae.upper:.3f}]", "mae real": mae.realized,
                     "mae rel err": mae.error / mae.realized,
                     "rmse est [band]": f"{rmse.estimated:.3f} [{rmse.lower:.3f}, {rmse.upper:.3f}]", "rmse real": rmse.realized,
                     "rmse rel err": rmse.error / rmse.realized})
    table(rows, f"DLE per window (seed 0, n = {WINDOW}; estimate before targets, realized after)")
    scored = [s for seed in range(seeds) for s in dle_world(seed, DLE_SHIFTS)]
    rows = []
    for metric in ("mae", "rmse"):
        part = [s for s in scored if s.metric == metric]
        rel = [abs(s.error) / s.realized for s in part]
        rows.append({"metric": metric, "windows": len(part), "mean |rel err|": float(np.mean(rel)), "max |rel err|": float(np.max(rel)),
                     "mean rel err (bias)": float(np.mean([s.error / s.realized for s in part])), "in band": f"{np.mean([s.covered for s in part]):.0%}"})
    table(rows, f"DLE estimated vs realized over {seeds} seeds x {len(DLE_SHIFTS)} windows (n = {WINDOW})")


# --- multivariate: correlation flip ---------------------------------------------------------------

FLIP_NUM = [f"f{i}" for i in range(10)]


def flip_rows(n: int, rng: np.random.Generator, rho: float) -> pd.DataFrame:
    """Ten N(0, 1) features, a 3-level categorical; corr(f0, f1) = rho. Marginals never change."""
    x = rng.normal(size=(n, 10))
    x[:, 1] = rho * x[:, 0] + math.sqrt(1 - rho**2) * x[:, 1]
    frame = pd.DataFrame(x, columns=FLIP_NUM)
    frame["segment"] = rng.choice(np.array(["a", "b", "c"], dtype=object), n, p=[0.5, 0.3, 0.2])
    frame["prediction"] = (frame["f5"] > 0).astype("int64")  # depends on one feature: its marginal is unchanged too
    return frame


def flip_model() -> Any:
    import tempfile

    from monitor.core.config import parse_config

    columns = {"timestamp": "ts", "id": "id", "prediction": "prediction", "numerical": FLIP_NUM, "categorical": ["segment"]}
    model = {"name": "flip", "source": {"type": "files", "path": "logs/*.parquet"}, "columns": columns, "task": "binary_classification"}
    return parse_config({"models": [model]}, base_dir=Path(tempfile.gettempdir())).models[0]


def first_alert(flags: list[bool], n: int = 2, m: int = 3) -> int | None:
    for i in range(len(flags)):
        if sum(flags[max(0, i - m + 1) : i + 1]) >= n:
            return i + 1
    return None


def section_flip(seeds: int, clean: int = 3, drifted: int = 3) -> None:
    from scipy.stats import ks_2samp

    from monitor.check.drift import check_drift, prepare_reference

    config = flip_model()
    hypotheses = len(FLIP_NUM) + 1 + 1  # the per-feature family plus the multivariate test
    rows = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        reference = flip_rows(50_000, rng, 0.5)
        prepared = prepare_reference(reference, config, "1")
        domain = prepare_domain_reference(reference, FLIP_NUM, ["segment"], seed=seed)
        mv, per_column, per_feature, ks = [], [], [], []
        for w in range(clean + drifted):
            window = flip_rows(WINDOW, rng, 0.5 if w < clean else -0.5)
            result = domain_classifier_test(domain, window, seed=1000 * seed + w)
            # Bonferroni inside the model's family: the strictest level the test would face there
            mv.append(result.p_value < ALPHA / hypotheses)
            outcome = check_drift(prepared, window, config)
            per_column.append(outcome.dataset_drifted)
            per_feature.append(bool(outcome.drifted_features))
            pvalues = [ks_2samp(reference[c], window[c]).pvalue for c in FLIP_NUM]
            ks.append(min(pvalues) < ALPHA / len(FLIP_NUM))
            top = ", ".join(f"{c.feature} {c.auroc_drop:.3f}" for c in result.contributions[:3])
            if seed == 0:
                rows.append({"window": w + 1, "corr(f0,f1)": 0.5 if w < clean else -0.5, "AUROC": result.auroc, "p": result.p_value,
                             "multivariate": result.p_value < ALPHA / hypotheses, "check_drift dataset": outcome.dataset_drifted,
                             "check_drift features": ",".join(outcome.drifted_features) or "-", "KS+Bonferroni": ks[-1], "top contributions": top or "-"})
        summary_row = {"seed": seed, "multivariate flags": "".join("x" if f else "." for f in mv),
                       "alert at drifted window": _after(first_alert(mv), clean),
                       "check_drift flags (any feature)": "".join("x" if f else "." for f in per_feature),
                       "check_drift alert": _after(first_alert(per_column), clean),
                       "KS flags": "".join("x" if f else "." for f in ks), "KS alert": _after(first_alert(ks), clean)}
        if seed == 0:
            table(rows, f"Correlation flip (seed 0): corr(f0, f1) 0.5 -> -0.5 after window {clean}, n = {WINDOW}, "
                        f"multivariate at p < {ALPHA}/{hypotheses} (Bonferroni in a {hypotheses}-test family)")
            summary = []
        summary.append(summary_row)
    table(summary, f"Correlation flip over {seeds} seeds: flags per window (x = rejected; {clean} clean then {drifted} flipped), 2-of-3 policy alert")


def _after(alert_at: int | None, clean: int) -> str:
    if alert_at is None:
        return "never"
    return f"{alert_at - clean}" if alert_at > clean else f"FALSE at {alert_at}"


# --- multivariate: null and power ----------------------------------------------------------------

MIXED_NUM = ["normal", "lognormal", "poisson2", "zero_inflated", "constant", "binary10", "uniform", "t3", "normal_b", "lognormal_b", "poisson_b", "bimodal"]
MIXED_CAT = ["level3", "zipf50", "level3_b", "zipf50_b"]


def mixed_rows(n: int, rng: np.random.Generator) -> pd.DataFrame:
    zipf = np.arange(1, 51) ** -1.3
    zipf /= zipf.sum()
    data: dict[str, Any] = {}
    for suffix in ("", "_b"):
        data["normal" + suffix] = rng.normal(size=n)
        data["lognormal" + suffix] = rng.lognormal(0, 1, n)
        data["poisson" + (suffix or "2")] = rng.poisson(2, n).astype(float)
        data["level3" + suffix] = rng.choice(np.array(["a", "b", "c"], dtype=object), n, p=[0.6, 0.3, 0.1])
        data["zipf50" + suffix] = np.array([f"k{i}" for i in range(50)], dtype=object)[rng.choice(50, n, p=zipf)]
    data["zero_inflated"] = np.where(rng.random(n) < 0.8, 0.0, rng.exponential(3, n))
    data["constant"] = np.full(n, 7.0)
    data["binary10"] = (rng.random(n) < 0.1).astype(float)
    data["uniform"] = rng.uniform(size=n)
    data["t3"] = rng.standard_t(3, n)
    data["bimodal"] = np.where(rng.random(n) < 0.5, rng.normal(-2, 0.5, n), rng.normal(2, 0.5, n))
    frame = pd.DataFrame(data)
    frame.loc[rng.random(n) < 0.05, "normal"] = np.nan  # 5% missing, as logs have
    return frame


def section_null(windows: int, learners: list[str]) -> None:
    # (window rows, reference rows, max_rows): the defaults (a 10,000-row window is tested on
    # 5,000 rows a side), then 10,000 rows a side against a reference twenty times larger
    settings = [(500, 60_000, 5_000), (2_000, 60_000, 5_000), (10_000, 60_000, 5_000), (10_000, 200_000, None)]
    rows = []
    for learner in learners:
        for n, reference_rows, max_rows in settings:
            rng = np.random.default_rng(n + reference_rows)
            domain = prepare_domain_reference(mixed_rows(reference_rows, rng), MIXED_NUM, MIXED_CAT, max_rows=reference_rows, seed=n)
            results = [domain_classifier_test(domain, mixed_rows(n, rng), learner=learner, max_rows=max_rows, seed=w, explain_below=0) for w in range(windows)]
            pvalues = np.array([r.p_value for r in results])
            flags = list(pvalues < ALPHA)
            rows.append({"learner": learner, "window n": n, "tested rows a side": results[0].window_rows, "reference": reference_rows, "windows": windows,
                         "rate @ 1%": f"{np.mean(pvalues < 0.01):.1%} ± {_binomial_ci(np.mean(pvalues < 0.01), windows):.1%}",
                         "rate @ 5%": f"{np.mean(pvalues < 0.05):.1%} ± {_binomial_ci(np.mean(pvalues < 0.05), windows):.1%}",
                         "rate @ 10%": f"{np.mean(pvalues < 0.10):.1%}", "KS vs uniform p": _uniform_p(pvalues),
                         "2-of-3 alerts seen": sum(1 for i in range(2, windows) if sum(flags[i - 2 : i + 1]) >= 2),
                         "2-of-3 / 30 days @1% (from rate)": 3 * np.mean(pvalues < 0.01) ** 2 * WINDOWS_PER_30_DAYS})
    table(rows, "Multivariate false alarms on undrifted windows (20-feature mixed model; one fixed reference per row, as in production; ± = 95% CI)")


def section_pool(windows: int, learners: list[str], pools: int = 4) -> None:
    """Why the tested rows are capped at a tenth of the reference: with one fixed reference, the
    rate conditional on it, as the share n / reference grows."""
    rows = []
    for learner in learners:
        for reference_rows in (20_000, 50_000, 200_000):
            for n in (2_000, 5_000, 10_000):
                if 2 * n > reference_rows:
                    continue
                rates1, rates5 = [], []
                for pool in range(pools):
                    rng = np.random.default_rng(1000 * pool + reference_rows + n)
                    domain = prepare_domain_reference(mixed_rows(reference_rows, rng), MIXED_NUM, MIXED_CAT, max_rows=reference_rows, seed=pool)
                    p = np.array([domain_classifier_test(domain, mixed_rows(n, rng), learner=learner, max_rows=None, reference_share=1.0,
                                                         seed=w, explain_below=0).p_value for w in range(windows)])
                    rates1.append(np.mean(p < 0.01))
                    rates5.append(np.mean(p < 0.05))
                rows.append({"learner": learner, "reference": reference_rows, "n": n, "n / reference": n / reference_rows,
                             "tests": pools * windows, "rate @ 1%": f"{np.mean(rates1):.1%}", "rate @ 5%": f"{np.mean(rates5):.1%}",
                             "per reference @ 5%": " ".join(f"{r:.0%}" for r in rates5)})
    table(rows, f"Multivariate false alarms by window share of the reference ({pools} references x {windows} windows each, uncapped)")


def _binomial_ci(rate: float, n: int) -> float:
    return 1.96 * math.sqrt(max(rate * (1 - rate), 1 / n) / n)


def _uniform_p(pvalues: np.ndarray) -> float:
    from scipy.stats import kstest

    return float(kstest(pvalues, "uniform").pvalue)


def power_changes() -> dict[str, Callable[[int, np.random.Generator], pd.DataFrame]]:
    def corr(rho: float) -> Callable[[int, np.random.Generator], pd.DataFrame]:
        return lambda n, rng: flip_rows(n, rng, rho)

    def segment_mix(n: int, rng: np.random.Generator) -> pd.DataFrame:
        # f2's mean depends on the segment; the segment mix and that dependence change so that
        # neither f2's nor the segment's marginal moves much, but their joint does
        frame = flip_rows(n, rng, 0.5)
        frame["f2"] = frame["f2"] + np.where(frame["segment"] == "a", 0.3, -0.3)
        return frame

    def segment_mix_ref(n: int, rng: np.random.Generator) -> pd.DataFrame:
        frame = flip_rows(n, rng, 0.5)
        frame["f2"] = frame["f2"] + np.where(frame["segment"] == "a", -0.3, 0.3)
        return frame

    def ring(n: int, rng: np.random.Generator) -> pd.DataFrame:
        # f3 = |f4| with a random sign before; after, the sign follows f4: same marginals
        frame = flip_rows(n, rng, 0.5)
        frame["f3"] = np.abs(frame["f3"]) * np.sign(frame["f4"]) * 1.0
        return frame

    def mean_shift(n: int, rng: np.random.Generator) -> pd.DataFrame:
        frame = flip_rows(n, rng, 0.5)
        frame["f2"] = frame["f2"] + 0.15
        return frame

    return {"corr 0.5 -> -0.5 (flip)": corr(-0.5), "corr 0.5 -> 0.3": corr(0.3), "corr 0.5 -> 0.4": corr(0.4),
            "segment-conditional mean": segment_mix, "sign of f3 follows f4": ring, "f2 mean +0.15 sd (marginal)": mean_shift,
            "_segment_ref": segment_mix_ref}


def section_power(windows: int, learners: list[str]) -> None:
    changes = power_changes()
    rows = []
    for name, make in changes.items():
        if name.startswith("_"):
            continue
        row: dict[str, Any] = {"change": name}
        for learner in learners:
            rng = np.random.default_rng(7)
            reference = (changes["_segment_ref"] if name.startswith("segment") else (lambda n, r: flip_rows(n, r, 0.5)))(50_000, rng)
            domain = prepare_domain_reference(reference, FLIP_NUM, ["segment"], seed=7)
            results = [domain_classifier_test(domain, make(WINDOW, rng), learner=learner, seed=w, explain_below=0) for w in range(windows)]
            row[f"{learner} detected @1%"] = f"{np.mean([r.p_value < ALPHA for r in results]):.0%}"
            row[f"{learner} AUROC"] = float(np.mean([r.auroc for r in results]))
        rows.append(row)
    table(rows, f"Multivariate power at n = {WINDOW} (one test per window, p < {ALPHA}; {windows} windows each; 10 numerical + 1 categorical)")


# --- cost ----------------------------------------------------------------------------------------


def section_cost(learners: list[str], repeat: int = 3) -> None:
    rows = []
    for features in (10, 20, 50):
        rng = np.random.default_rng(features)
        names = [f"f{i}" for i in range(features)]
        reference = pd.DataFrame(rng.normal(size=(60_000, features)), columns=names)
        reference["segment"] = rng.choice(np.array(["a", "b", "c"], dtype=object), 60_000)
        domain = prepare_domain_reference(reference, names, ["segment"])
        drifted = reference.sample(20_000, random_state=1).reset_index(drop=True)
        drifted["f0"] = drifted["f0"] + 0.5
        for learner in learners:
            for n in (2_000, 5_000, 10_000):
                window = drifted.iloc[:n]
                row: dict[str, Any] = {"features": features + 1, "learner": learner, "n": n}
                for label, explain in (("no drift path", 0.0), ("drift + contributions", 1.0)):
                    wall, cpu = _best(lambda: domain_classifier_test(domain, window, learner=learner, max_rows=None, reference_share=1.0,
                                                                     explain_below=explain), repeat)
                    row[f"{label} wall s"] = wall
                    row[f"{label} cpu s"] = cpu
                rows.append(row)
    table(rows, "Multivariate check cost, one thread (best of 3; reference sample = window size; contributions = one re-score per feature)")

    rows = []
    rng = np.random.default_rng(0)
    model = classifiers(0)["hgb"].fit(*_xy(binary_rows(20_000, rng)))
    estimator = fit_cbpe(score(model, binary_rows(10_000, rng)), prediction="prediction", probability="probability", target="target")
    reg_model = regression_model(0, rng)
    reg_reference = regression_rows(10_000, rng)
    reg_reference["prediction"] = reg_model.predict(regression_design(reg_reference))
    started = time.process_time()
    dle = fit_dle(reg_reference, numerical=REGRESSION_NUM, categorical=["segment"], prediction="prediction", target="target")
    fit_cpu = time.process_time() - started
    for n in (2_000, 10_000, 100_000):
        window = score(model, binary_rows(n, rng)).drop(columns="target")
        wall, cpu = _best(lambda: estimator.estimate(window), repeat)
        rows.append({"estimator": "cbpe (binary)", "n": n, "wall s": wall, "cpu s": cpu})
        reg_window = regression_rows(n, rng)
        reg_window["prediction"] = reg_model.predict(regression_design(reg_window))
        reg_window = reg_window.drop(columns="target")
        wall, cpu = _best(lambda: dle.estimate(reg_window), repeat)
        rows.append({"estimator": "dle", "n": n, "wall s": wall, "cpu s": cpu})
    rows.append({"estimator": "dle fit (10k reference, once per version)", "n": 10_000, "wall s": float("nan"), "cpu s": fit_cpu})
    table(rows, "Estimate cost per window (best of 3)")


def _best(run: Callable[[], Any], repeat: int) -> tuple[float, float]:
    best_wall, best_cpu = float("inf"), float("inf")
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        best_wall, best_cpu = min(best_wall, time.perf_counter() - wall), min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu


# --- the shipped defaults, end to end -----------------------------------------------------------


def section_wired(seeds: int, clean: int = 3, drifted: int = 3) -> None:
    """The flip and a quality drop through run_check with the default config, then the policy."""
    import tempfile
    from datetime import datetime, timedelta, timezone

    from monitor.check.policy import decide
    from monitor.check.run import WindowSpec, run_check
    from monitor.core.config import Config, parse_config
    from monitor.service.cycle import open_inputs
    from monitor.service.reference import References
    from monitor.state.store import StateStore

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    summary = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            reference = flip_rows(50_000, rng, 0.5)
            reference.to_parquet(base / "reference.parquet", index=False)
            (base / "logs").mkdir()
            columns = {"timestamp": "ts", "id": "id", "prediction": "prediction", "numerical": FLIP_NUM, "categorical": ["segment"]}
            raw = {"models": [{"name": "flip", "source": {"type": "files", "path": str(base / "logs" / "*.parquet")},
                               "reference": str(base / "reference.parquet"), "columns": columns,
                               "task": "binary_classification", "window": {"size": "1h"}}]}
            config: Config = parse_config(raw, base_dir=base)
            model = config.models[0]
            loaded = References(config).get(model)
            store = StateStore("sqlite:///:memory:")
            store.migrate()
            flags, features, seconds = [], [], []
            first = None
            for w in range(clean + drifted):
                window = flip_rows(WINDOW, rng, 0.5 if w < clean else -0.5)
                begin = start + timedelta(hours=w)
                window["ts"] = [begin + timedelta(seconds=1 + i) for i in range(len(window))]
                window["id"] = np.arange(len(window)) + w * 10 * WINDOW
                window.to_parquet(base / "logs" / f"w{w}.parquet", index=False)
                inputs = open_inputs(model)
                try:
                    result = run_check(inputs, loaded.prepared, WindowSpec(since=begin, until=begin + timedelta(hours=1)),
                                       now=begin + timedelta(hours=1), signals=loaded.signals).result
                finally:
                    inputs.close()
                store.record_check(result)
                flags.append(result.multivariate is not None and result.multivariate.drifted)
                features.append(bool(result.drifted_features))
                seconds.append(result.multivariate.seconds if result.multivariate else float("nan"))
                decision = decide(model.policy, model.retrain, store.recent_checks("flip", 20), alert_firing=False, jobs=[],
                                  champion_score=None, primary_metric=None, now=begin + timedelta(hours=1), labelled_rows=None)
                if decision.alert == "fire" and first is None:
                    first = w + 1
                    strongest = ", ".join(result.multivariate.strongest) if result.multivariate else "-"
            summary.append({"seed": seed, "multivariate flags": "".join("x" if f else "." for f in flags),
                            "any feature drifted": "".join("x" if f else "." for f in features),
                            "policy alert (drifted window)": _after(first, clean),
                            "strongest at alert": strongest if first else "-",
                            "test seconds (median)": float(np.nanmedian(seconds))})
    defaults = parse_config({"models": [{"name": "m", "source": {"type": "files", "path": "x"}, "columns": {"timestamp": "t", "id": "i", "prediction": "p", "numerical": ["a"]}, "task": "regression"}]}, base_dir=Path(".")).models[0]
    mv = defaults.drift.multivariate
    table(summary, f"Shipped defaults through run_check + policy: correlation flip after window {clean}, n = {WINDOW}; "
                   f"multivariate in the family at drift.false_alarm_rate {defaults.drift.false_alarm_rate}, max_rows {mv.max_rows}, learner {mv.learner}; policy alert_after {defaults.policy.alert_after}")


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default="cbpe,dle,concept,flip,wired,null,power,cost")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--null-windows", type=int, default=200)
    parser.add_argument("--power-windows", type=int, default=40)
    parser.add_argument("--learners", default="hgb,hgb_axis,logistic")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    learners = args.learners.split(",")
    sections = {
        "cbpe": lambda: section_cbpe(args.seeds),
        "dle": lambda: section_dle(args.seeds),
        "concept": lambda: section_concept(args.seeds),
        "flip": lambda: section_flip(max(args.seeds, 10)),
        "null": lambda: section_null(args.null_windows, [name for name in learners if name != "hgb_axis"]),
        "wired": lambda: section_wired(max(args.seeds, 10)),
        "pool": lambda: section_pool(75, [name for name in learners if name != "hgb_axis"]),
        "power": lambda: section_power(args.power_windows, learners),
        "cost": lambda: section_cost(learners),
    }
    print(f"# bench/estimation.py  seeds={args.seeds}  window={WINDOW}")
    with one_thread():  # as the check runs: one thread per check
        for name in args.sections.split(","):
            started = time.perf_counter()
            sections[name]()
            print(f"\n({name}: {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
