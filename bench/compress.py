"""Benchmark the recompression stage: sklearn model before, served ONNX variant after.

Seeded 50k x 30 binary classification set (27 numerical columns from make_classification,
3 categorical string columns binned from 3 more informative features), split 30k train /
10k validation / 10k holdout, ColumnTransformer(StandardScaler, OneHotEncoder) pipelines.
As in a retrain: `compress` chooses a variant on the validation rows only (pruning built on
one half, every variant measured on the other); the gate then tests that one choice on the
holdout — max_quality_loss = 0.01 (1 accuracy point) at the 95% upper confidence bound of the
loss (retrain.evaluate.gate_compression); a refused variant falls back to the lossless ONNX
conversion. Latency: single-row p50 over 200 calls, one 10k-row batch; onnxruntime with one
intra-op thread, sklearn defaults.
Run: .venv/bin/python bench/compress.py   (prints numbers, never fails)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from monitor.core.config import Columns, FilesSource, ModelConfig, RetrainOptions  # noqa: E402
from retrain.compress import compress, onnx_predict  # noqa: E402
from retrain.evaluate import Served, gate_compression  # noqa: E402

SEED, ROWS, MAX_LOSS = 0, 50_000, 0.01


def dataset(rows: int = ROWS) -> tuple[pd.DataFrame, list[str], list[str]]:
    X, y = make_classification(n_samples=rows, n_features=30, n_informative=15, n_redundant=6,
                               flip_y=0.03, class_sep=0.8, shuffle=False, random_state=SEED)
    rng = np.random.default_rng(SEED)
    order = rng.permutation(rows)  # shuffle=False keeps informative features first, but rows sorted by class
    X, y = X[order], y[order]
    numerical = [f"x{i}" for i in range(27)]
    frame = pd.DataFrame(X[:, 3:30], columns=numerical)  # informative features 0-2 become categories
    categorical = []
    for j in range(3):
        codes = np.digitize(X[:, j] + rng.normal(0, 0.3, rows), [-1.0, -0.3, 0.3, 1.0])
        frame[f"c{j}"] = np.array(["a", "b", "c", "d", "e"])[codes]
        categorical.append(f"c{j}")
    frame["y"] = y
    return frame, numerical, categorical


def models() -> dict[str, object]:
    return {
        "RandomForest(100)": RandomForestClassifier(n_estimators=100, random_state=SEED),
        "HistGradientBoosting": HistGradientBoostingClassifier(random_state=SEED),
        "LogisticRegression": LogisticRegression(max_iter=1000),
        "MLP(128,64)": MLPClassifier((128, 64), early_stopping=True, max_iter=60, random_state=SEED),
    }


def size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def gated(result, holdout: pd.DataFrame, pipe, numerical: list[str], categorical: list[str]):
    """The holdout gate on `compress`'s choice: (served variant or None, gate, refusals)."""
    result = result.with_lossless()  # the fallback; a retrain builds it only when the chosen variant is refused
    columns = Columns(timestamp="ts", id="id", prediction="prediction", target="y", numerical=numerical, categorical=categorical)
    model = ModelConfig(name="bench", source=FilesSource(type="files", path="unused"), columns=columns,
                        task="binary_classification", retrain=RetrainOptions(max_quality_loss=MAX_LOSS))
    graphs = {v.name: (v, g) for v, g in ((result.lossless, result.lossless_model), (result.chosen, result.onnx_model)) if v and g}
    candidates = [Served(name, onnx_predict(g, holdout, numerical, categorical)[0], lossless=v.lossless)
                  for name, (v, g) in reversed(graphs.items())]
    uncompressed = Served("none", pipe.predict(holdout[numerical + categorical]), lossless=True)
    served, gate, refused = gate_compression(model, holdout, uncompressed.labels, [*candidates, uncompressed], model.retrain)
    return graphs.get(served.name, (None, None))[0], gate, refused


def main() -> None:
    frame, numerical, categorical = dataset()
    train, validation, holdout = frame[:30_000], frame[30_000:40_000], frame[40_000:]
    columns = numerical + categorical
    head = (f"{'model':22} {'variant':38} {'size':>9} {'smaller':>8} {'p50 ms':>8} {'faster':>7} {'10k ms':>8} "
            f"{'holdout acc':>11} {'loss pt':>8} {'95% bound':>9}")
    rows, details = [head, "-" * len(head)], []
    for name, estimator in models().items():
        pipe = Pipeline([("columns", ColumnTransformer([("num", StandardScaler(), numerical),
                                                        ("cat", OneHotEncoder(handle_unknown="ignore"), categorical)])),
                         ("model", estimator)])
        start = time.perf_counter()
        pipe.fit(train[columns], train["y"])
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        result = compress(pipe, validation, target="y", numerical=numerical, categorical=categorical,
                          task="binary_classification", strategies=["onnx", "prune", "quantize"],
                          max_quality_loss=MAX_LOSS, seed=SEED)
        compress_s = time.perf_counter() - start
        before = result.original
        accuracy = float(np.mean(pipe.predict(holdout[columns]) == holdout["y"].to_numpy()))
        rows.append(f"{name:22} {'sklearn (before)':38} {size(before.size_bytes):>9} {'':>8} {before.p50_ms:8.3f} {'':>7} "
                    f"{before.batch10k_ms:8.1f} {accuracy:11.4f}")
        after, gate, refused = gated(result, holdout, pipe, numerical, categorical)
        if after is None:
            rows.append(f"{'':22} {'sklearn serves: ' + result.reason[:60]}")
            continue
        rows.append(f"{'':22} {after.name + ' (served)':38} {size(after.size_bytes):>9} "
                    f"{before.size_bytes / after.size_bytes:7.1f}x {after.p50_ms:8.3f} {before.p50_ms / after.p50_ms:6.0f}x "
                    f"{after.batch10k_ms:8.1f} {accuracy + gate.value:11.4f} {-100 * gate.value:+8.2f} {-100 * gate.bound:+9.2f}")
        details.append(f"{name}: fit {fit_s:.1f}s, compress {compress_s:.1f}s; chosen on {result.select_rows} validation rows: "
                       f"{result.chosen.name if result.chosen else 'none'}" + "".join(f"; {r}" for r in refused))
        for v in result.variants:
            details.append(f"  {v.name:38} {size(v.size_bytes):>9} p50 {v.p50_ms:.3f} ms  p99 {v.p99_ms:.3f} ms  "
                           f"10k {v.batch10k_ms:.1f} ms  acc {v.quality:.4f}  loss bound {v.loss_bound:+.4f}  "
                           f"{'PASS' if v.passed else 'fail'}  {v.note}")
        details += [f"  skipped {s.name}: {s.reason}" for s in result.skipped]
    print("\n".join(rows))
    print(f"\nmax_quality_loss={MAX_LOSS}; variants as measured on the validation selection rows:")
    print("\n".join(details))


if __name__ == "__main__":
    main()
