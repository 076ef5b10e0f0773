"""Benchmark: false alarms and power of driftd's calibrated drift tests with the default policy.

A 20-feature model (normal, lognormal, Poisson(2), 80% zero-inflated, constant, 3-level,
50-level Zipf-like, binary 10%; types repeated to reach 20), references of 50,000 rows
(`--references` of them, seeded), windows of n = 100, 200, 500, 1,000, 10,000 rows. Every window
goes through driftd's own `check_drift` with the default drift config (the vectorised path:
monitor.check.stats + monitor.check.calibrate) and, for power, through the real policy (`monitor.check.policy.decide`).

(a) False alarms with no drift at all. Per n: windows checked, the share with dataset drift r
    (and its one-sided 95% Clopper-Pearson upper bound), and false alerts per model per 30 days
    at a 15-minute cadence (2,880 windows) with the default policy. The alert rule fires when
    alert_after.n of the last alert_after.m windows drifted (2 of 3), so with independent windows
    a new alert starts at most at rate P(Binomial(m, r) >= n) per window: alerts per 30 days
    <= 2880 * P(Binomial(3, r) >= 2) — computed from r (and from its upper bound), not simulated.
    Also per column type: the share of raw distribution-test p-values below 1% and 0.1% (calibration).
(b) Power: one feature of 20 changed (+0.2 sd, variance x1.5, a new category at 5%, binary
    10% -> 20%, 10% NaN appearing). Each run feeds 3 changed windows after 3 clean ones through
    `decide` (default policy); "alerted" = the policy fires within the 3 changed windows.

    python bench/false_alarms.py [--windows 1000] [--windows-large 300] [--runs 40] [--references 4]
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sstats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.check.drift import PreparedReference, check_drift, prepare_reference  # noqa: E402
from monitor.check.policy import decide  # noqa: E402
from monitor.core.config import ModelConfig, parse_config  # noqa: E402
from monitor.core.records import CheckRecord  # noqa: E402
from monitor.core.results import CheckStatus  # noqa: E402

SIZES = (100, 200, 500, 1000, 10_000)
REFERENCE_ROWS = 50_000
WINDOWS_PER_30_DAYS = 30 * 24 * 4
TYPES = ["normal", "lognormal", "poisson", "zero_inflated", "constant", "cat3", "zipf50", "binary"]
# 8 types, repeated to reach 20 features
FEATURE_TYPES = TYPES + TYPES + ["normal", "lognormal", "cat3", "zipf50"]
FEATURES = [f"f{i:02d}_{t}" for i, t in enumerate(FEATURE_TYPES)]
CATEGORICAL = [f for f, t in zip(FEATURES, FEATURE_TYPES) if t in ("cat3", "zipf50")]
NUMERICAL = [f for f in FEATURES if f not in CATEGORICAL]
ZIPF = np.arange(1, 51) ** -1.3
ZIPF /= ZIPF.sum()
LEVELS50 = np.array([f"z{k}" for k in range(50)], dtype=object)
LEVELS3 = np.array(["a", "b", "c"], dtype=object)

SCENARIOS = {
    "+0.2 sd": ("f00_normal", "shift"),
    "variance x1.5": ("f00_normal", "variance"),
    "new category 5%": ("f06_zipf50", "new_category"),
    "binary 10% -> 20%": ("f07_binary", "binary"),
    "10% NaN appearing": ("f00_normal", "nan"),
}


def column(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "normal":
        return rng.normal(0.0, 1.0, n)
    if kind == "lognormal":
        return rng.lognormal(0.0, 1.0, n)
    if kind == "poisson":
        return rng.poisson(2.0, n).astype(np.float64)
    if kind == "zero_inflated":
        return np.where(rng.random(n) < 0.8, 0.0, rng.gamma(2.0, 3.0, n))
    if kind == "constant":
        return np.full(n, 7.0)
    if kind == "cat3":
        return LEVELS3[rng.choice(3, n, p=[0.6, 0.3, 0.1])]
    if kind == "zipf50":
        return LEVELS50[rng.choice(50, n, p=ZIPF)]
    if kind == "binary":
        return (rng.random(n) < 0.1).astype(np.float64)
    raise ValueError(kind)


def frame(n: int, rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame({f: column(t, n, rng) for f, t in zip(FEATURES, FEATURE_TYPES)})


def changed(window: pd.DataFrame, scenario: str, rng: np.random.Generator) -> pd.DataFrame:
    feature, how = SCENARIOS[scenario]
    out = window.copy()
    n = len(out)
    if how == "shift":
        out[feature] = out[feature] + 0.2
    elif how == "variance":
        out[feature] = out[feature] * np.sqrt(1.5)
    elif how == "new_category":
        out.loc[rng.random(n) < 0.05, feature] = "brand-new"
    elif how == "binary":
        out[feature] = (rng.random(n) < 0.2).astype(np.float64)
    elif how == "nan":
        out.loc[rng.random(n) < 0.10, feature] = np.nan
    return out


def model_config() -> ModelConfig:
    columns = {"timestamp": "ts", "id": "id", "prediction": "prediction", "numerical": NUMERICAL, "categorical": CATEGORICAL}
    model = {"name": "bench", "source": {"type": "files", "path": "x/*.parquet"}, "columns": columns,
             "task": "binary_classification", "window": {"min_rows": 100}}
    return parse_config({"models": [model]}, base_dir=Path(".")).models[0]


def record(i: int, drifted: bool, at: datetime) -> CheckRecord:
    status = CheckStatus.DRIFT if drifted else CheckStatus.OK
    return CheckRecord(f"c{i}", "bench", status, at, at - timedelta(minutes=15), at, 0, 0, 0.0, drifted, None, None)


def alerted_within(verdicts: list[bool], model: ModelConfig, watch: int) -> bool:
    """Feed the verdicts through the real policy; did it fire during the last `watch` windows?"""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    history: list[CheckRecord] = []
    firing = False
    for i, drifted in enumerate(verdicts):
        at = start + timedelta(minutes=15 * i)
        history.append(record(i, drifted, at))
        decision = decide(model.policy, model.retrain, history, alert_firing=firing, jobs=[], champion_score=None,
                          primary_metric=None, now=at, labelled_rows=None)
        if decision.alert == "fire":
            if i >= len(verdicts) - watch:
                return True
            firing = True
        elif decision.alert == "resolve":
            firing = False
    return False


def upper_bound(hits: int, trials: int, confidence: float = 0.95) -> float:
    return 1.0 if hits >= trials else float(sstats.beta.ppf(confidence, hits + 1, trials - hits))


def per_30_days(rate: float, model: ModelConfig) -> float:
    rule = model.policy.alert_after
    return WINDOWS_PER_30_DAYS * float(sstats.binom.sf(rule.n - 1, rule.m, rate))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--windows", type=int, default=1000, help="null windows per size up to 1,000 rows (over all references)")
    parser.add_argument("--windows-large", type=int, default=300, help="null windows at sizes above 1,000 rows")
    parser.add_argument("--runs", type=int, default=40, help="power runs per scenario and size")
    parser.add_argument("--references", type=int, default=4)
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    args = parser.parse_args()
    model = model_config()
    started = time.perf_counter()
    references: list[PreparedReference] = []
    for r in range(args.references):
        references.append(prepare_reference(frame(REFERENCE_ROWS, np.random.default_rng(1000 + r)), model, f"ref{r}"))
    print(f"{args.references} references of {REFERENCE_ROWS} rows prepared in {time.perf_counter() - started:.1f}s")
    kind_of = dict(zip(FEATURES, FEATURE_TYPES))

    print("\n(a) no drift: false alerts per model per 30 days (15-min cadence, default policy: alert after 2 of 3 windows)")
    print(f"{'n':>6} {'windows':>8} {'drift windows':>14} {'rate':>7} {'rate 95% up':>12} {'alerts/30d':>11} {'alerts/30d up':>14} {'s/window':>9}")
    pvals: dict[tuple[int, str], list[float]] = {}
    for n in args.sizes:
        rng = np.random.default_rng(n)
        hits = 0
        t0 = time.perf_counter()
        windows = args.windows if n <= 1000 else args.windows_large
        for w in range(windows):
            outcome = check_drift(references[w % len(references)], frame(n, rng), model)
            hits += outcome.dataset_drifted
            for f in outcome.features:
                if f.p_value is not None:
                    pvals.setdefault((n, kind_of[f.feature]), []).append(f.p_value)
        per = (time.perf_counter() - t0) / windows
        rate, up = hits / windows, upper_bound(hits, windows)
        print(f"{n:>6} {windows:>8} {hits:>14} {rate:>7.2%} {up:>12.2%} {per_30_days(rate, model):>11.2f} "
              f"{per_30_days(up, model):>14.2f} {per:>9.3f}", flush=True)

    print("\n    per-test calibration with no drift: share of raw distribution-test p-values below 1% / 0.1% (novelty for the constant)")
    print(f"{'type':>14} " + " ".join(f"{'n=' + str(n):>16}" for n in args.sizes))
    for kind in TYPES:
        cells = []
        for n in args.sizes:
            p = np.array(pvals.get((n, kind), [1.0]))
            cells.append(f"{np.mean(p < 0.01):6.2%}/{np.mean(p < 0.001):6.2%}")
        print(f"{kind:>14} " + " ".join(f"{c:>16}" for c in cells))

    print(f"\n(b) power: one feature of 20 changed; alerted by the default policy within 3 windows ({args.runs} runs per cell)")
    print(f"{'change':>20} " + " ".join(f"{'n=' + str(n):>10}" for n in args.sizes))
    for scenario in SCENARIOS:
        cells = []
        for n in args.sizes:
            rng = np.random.default_rng(zlib.crc32(f"{scenario}|{n}".encode()))
            alerted = 0
            for run in range(args.runs):
                ref = references[run % len(references)]
                verdicts = [check_drift(ref, frame(n, rng), model).dataset_drifted for _ in range(3)]
                verdicts += [check_drift(ref, changed(frame(n, rng), scenario, rng), model).dataset_drifted for _ in range(3)]
                alerted += alerted_within(verdicts, model, watch=3)
            cells.append(f"{alerted / args.runs:.0%}")
        print(f"{scenario:>20} " + " ".join(f"{c:>10}" for c in cells), flush=True)
    print(f"\ntotal {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
