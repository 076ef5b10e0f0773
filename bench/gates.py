"""Benchmark the promotion gates: do they hold on data nobody has seen?

Part 1 — the retrain path, seed by seed. The demo's loan world (monitor.demo.world): a
champion trained before a drift; a labelled window after it (drift 1.0, 0.6, 0.3 or 0.0 by
seed, so some retrains cannot beat the champion); then a LATER UNSEEN period of 30,000 rows
from the same drifted world. The challenger is refitted on the window's train split
(retrain.train.refit), compressed on its validation split (retrain.compress.compress, every
strategy) and gated on its holdout (retrain.evaluate.evaluate) — the real pipeline functions,
split by time 60/20/20 as retrain.data does. On the unseen period we measure what the gates
claimed: the served variant's loss against the uncompressed challenger (must be within
max_quality_loss in >= 95% of seeds) and the served challenger's gain over the champion
(must be >= min_improvement whenever the gate promoted, at the configured confidence).

Part 2 — the bootstrap bound's own calibration vs the holdout size (justifies
retrain.min_holdout_rows): a variant whose true loss is exactly the budget, on holdouts of n
rows where it disagrees with the uncompressed model on a share d of the rows. A calibrated
95% gate passes it in 5% of holdouts; more is a gate that overstates its confidence.

Run: .venv/bin/python bench/gates.py [--seeds 20] [--quick]   (prints tables, never fails)
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from monitor.core.config import Columns, FilesSource, ModelConfig, RetrainOptions  # noqa: E402
from monitor.demo.world import CATEGORICAL, FEATURES, ID, NUMERICAL, PREDICTION, PROBABILITY, TARGET, TIMESTAMP, baseline_pipeline, make_loans  # noqa: E402
from retrain.bounds import paired_gain  # noqa: E402
from retrain.compress import compress, onnx_predict  # noqa: E402
from retrain.data import split_by_time  # noqa: E402
from retrain.evaluate import SKLEARN, Served, evaluate  # noqa: E402
from retrain.train import refit  # noqa: E402

DRIFTS = (1.0, 0.6, 0.3, 0.0)  # by seed: most retrains matter, some cannot win
WINDOW_ROWS, UNSEEN_ROWS, CHAMPION_ROWS = 10_000, 30_000, 4000
OPTIONS = RetrainOptions(max_quality_loss=0.01, min_improvement=0.0, confidence=0.95)
FAMILIES = {
    "RandomForest(100)": dict(kind="forest", n_estimators=100, max_depth=None, min_samples_leaf=1),
    "HistGradientBoosting": dict(kind="boosting", max_iter=200, max_leaf_nodes=31),
    "LogisticRegression": dict(kind="logistic"),
}


def loans_model() -> ModelConfig:
    columns = Columns(timestamp=TIMESTAMP, id=ID, prediction=PREDICTION, probability=PROBABILITY, target=TARGET,
                      numerical=NUMERICAL, categorical=CATEGORICAL)
    return ModelConfig(name="loans", source=FilesSource(type="files", path="unused"), columns=columns,
                       task="binary_classification", retrain=OPTIONS)


@dataclass(frozen=True)
class Seed:
    family: str
    seed: int
    drift: float
    served: str
    lossy: bool
    refused: int
    hold_loss: float  # served vs uncompressed on the holdout (point)
    hold_loss_bound: float
    unseen_loss: float
    promoted: bool
    hold_gain: float  # served vs champion on the holdout (point)
    hold_gain_bound: float
    unseen_gain: float
    ratio: float  # size: uncompressed pickle / served
    seconds: float


def served_labels(result, served: str, frame: pd.DataFrame, challenger) -> np.ndarray:
    if served == SKLEARN:
        return challenger.predict(frame[FEATURES])
    graph = result.onnx_model if result.chosen and result.chosen.name == served else result.lossless_model
    return onnx_predict(graph, frame, NUMERICAL, CATEGORICAL)[0]


def one_seed(family: str, params: dict, seed: int) -> Seed:
    started = time.perf_counter()
    model, drift = loans_model(), DRIFTS[seed % len(DRIFTS)]
    params = dict(params)
    kind = params.pop("kind")
    champion = baseline_pipeline(kind, seed=seed, **params).fit(*_xy(make_loans(CHAMPION_ROWS, seed=10_000 + seed)))
    window = make_loans(WINDOW_ROWS, seed=20_000 + seed, drift=drift)
    train, validation, holdout = (f.reset_index(drop=True) for f in split_by_time(window, TIMESTAMP, ID))
    challenger = refit(champion, train, features=FEATURES, target=TARGET, seed=seed).estimator
    result = compress(challenger, validation, target=TARGET, numerical=NUMERICAL, categorical=CATEGORICAL,
                      task=model.task, strategies=["onnx", "prune", "quantize"], max_quality_loss=OPTIONS.max_quality_loss,
                      confidence=OPTIONS.confidence, seed=seed, latency_calls=20, batch_rows=1000)
    result = result.with_lossless()  # the gate's fallback (a retrain builds it only when the chosen one is refused)
    candidates = [Served(v.name, served_labels(result, v.name, holdout, challenger), lossless=v.lossless)
                  for v in dict.fromkeys(v for v in (result.chosen, result.lossless) if v is not None)]
    ev = evaluate(model, holdout, champion=Served("champion", champion.predict(holdout[FEATURES])),
                  uncompressed=Served(SKLEARN, challenger.predict(holdout[FEATURES]), lossless=True),
                  candidates=candidates, options=OPTIONS)
    improvement, compression = ev.gates
    unseen = make_loans(UNSEEN_ROWS, seed=30_000 + seed, drift=drift)
    truth = unseen[TARGET].to_numpy()
    acc = {name: float(np.mean(labels == truth)) for name, labels in (
        ("served", served_labels(result, ev.served, unseen, challenger)),
        ("uncompressed", challenger.predict(unseen[FEATURES])), ("champion", champion.predict(unseen[FEATURES])))}
    variant = next((v for v in result.variants if v.name == ev.served), None)
    return Seed(family, seed, drift, ev.served, variant is not None and not variant.lossless, len(ev.refused),
                -compression.value, -compression.bound, acc["uncompressed"] - acc["served"], ev.passed,
                improvement.value, improvement.bound, acc["served"] - acc["champion"],
                result.original.size_bytes / (variant.size_bytes if variant else result.original.size_bytes),
                time.perf_counter() - started)


def _xy(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    return frame[FEATURES], frame[TARGET]


def part1(seeds: int) -> list[Seed]:
    head = (f"{'family':21} {'seed':>4} {'drift':>5} {'served':34} {'size':>6} {'hold loss':>9} {'bound':>7} "
            f"{'UNSEEN loss':>11} {'promo':>5} {'hold gain':>9} {'bound':>7} {'UNSEEN gain':>11} {'s':>5}")
    print(head + "\n" + "-" * len(head), flush=True)
    rows = []
    for family, params in FAMILIES.items():
        for seed in range(seeds):
            r = one_seed(family, params, seed)
            rows.append(r)
            print(f"{family:21} {r.seed:4d} {r.drift:5.1f} {r.served + (' (lossy)' if r.lossy else ''):34} {r.ratio:5.1f}x "
                  f"{100 * r.hold_loss:+8.2f}p {100 * r.hold_loss_bound:+6.2f}p {100 * r.unseen_loss:+10.2f}p "
                  f"{'yes' if r.promoted else 'no':>5} {100 * r.hold_gain:+8.2f}p {100 * r.hold_gain_bound:+6.2f}p "
                  f"{100 * r.unseen_gain:+10.2f}p {r.seconds:5.1f}", flush=True)
    return rows


def summary(rows: list[Seed]) -> None:
    budget = OPTIONS.max_quality_loss
    head = (f"{'family':21} {'seeds':>5} {'lossy served':>12} {'unseen loss <= budget':>21} {'worst unseen loss':>17} "
            f"{'promoted':>8} {'promoted & unseen gain >= min':>29} {'median size':>11}")
    print(f"\nsummary (max_quality_loss {budget}, min_improvement {OPTIONS.min_improvement}, confidence {OPTIONS.confidence:.0%}; "
          "p = accuracy points)\n" + head + "\n" + "-" * len(head))
    for family in [*FAMILIES, "all"]:
        mine = [r for r in rows if family in ("all", r.family)]
        within = sum(r.unseen_loss <= budget for r in mine)
        promoted = [r for r in mine if r.promoted]
        good = sum(r.unseen_gain >= OPTIONS.min_improvement for r in promoted)
        print(f"{family:21} {len(mine):5d} {sum(r.lossy for r in mine):12d} {within:>10d}/{len(mine)} ({within / len(mine):4.0%}) "
              f"{100 * max(r.unseen_loss for r in mine):+16.2f}p {len(promoted):8d} "
              f"{good:>18d}/{len(promoted)} ({good / max(len(promoted), 1):4.0%}) {np.median([r.ratio for r in mine]):10.1f}x")
    wrong = [r for r in rows if not r.promoted and r.unseen_gain > 0.01]
    print(f"not promoted although the unseen gain exceeded 1 point: {len(wrong)} of {sum(not r.promoted for r in rows)} refusals "
          "(the price of the bound: power, not safety)")


def part2(repeats: int) -> None:
    """Each gate at its limit: the compression gate facing a variant that loses exactly the
    budget, the improvement gate facing a challenger exactly as good as the champion (the
    default min_improvement of 0). Per-row outcomes are drawn for two models that disagree on a
    share d of the rows; the gate is retrain.bounds.paired_gain as the pipeline calls it."""
    budget, confidence = OPTIONS.max_quality_loss, OPTIONS.confidence
    sizes, disagreements = (100, 200, 300, 500, 1000, 2000, 5000), (0.02, 0.05, 0.10, 0.20)
    pairs = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])  # (reference model right, other model right)
    for title, true_gain, passes in (
        (f"compression gate: a variant losing exactly {budget}", -budget, lambda g: -g.lower <= budget + 1e-9),
        ("improvement gate: a challenger exactly as good as the champion", 0.0, lambda g: g.lower >= -1e-12),
    ):
        print(f"\n{title} passes the {confidence:.0%} gate in this share of {repeats} holdouts (calibrated: {1 - confidence:.0%})")
        print(f"{'holdout rows':>12} " + " ".join(f"{'disagree ' + format(d, '.0%'):>12}" for d in disagreements))
        rng = np.random.default_rng(0)
        for n in sizes:
            cells = []
            for d in disagreements:
                p = np.array([(d - true_gain) / 2, (d + true_gain) / 2, (1 - d) / 2, (1 - d) / 2])
                passed = 0
                for _ in range(repeats):
                    rows = np.repeat(pairs, rng.multinomial(n, p), axis=0)
                    passed += passes(paired_gain("accuracy", np.ones(n, dtype=int), rows[:, 1], rows[:, 0], confidence=confidence))
                cells.append(f"{passed / repeats:12.1%}")
            print(f"{n:12d} " + " ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1000, help="holdouts per cell in part 2")
    args = parser.parse_args()
    started = time.perf_counter()
    with threadpool_limits(limits=1):  # the box is shared: one thread, comparable timings
        rows = part1(args.seeds)
        summary(rows)
        part2(args.repeats)
    print(f"\nrun time {time.perf_counter() - started:.0f} s on {len(rows)} retrains")


if __name__ == "__main__":
    main()
