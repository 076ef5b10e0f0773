"""Benchmark a whole `driftd retrain`: RandomForest(100) on 50k labelled rows, compression on.

bench/compress.py's seeded 30-column set (27 numerical + 3 categorical columns): a champion
ColumnTransformer + RandomForest(100) pipeline registered in an embedded MLflow store
(SQLite), then 50,000 labelled production rows logged as Parquet. `run_retrain` runs exactly as `driftd retrain`
does (split 60/20/20 by time, train, compress with every strategy, gate on the holdout,
register, promote). Stage times come from the pipeline's progress lines and from
`CompressionResult.seconds` (score candidates natively / convert to ONNX / measure).
The machine's load average is printed with the table: on a loaded box every wall time grows
(a process starved of CPU gains nothing from a second thread), so the CPU seconds of the
retrain are printed too.

Run: .venv/bin/python bench/retrain_speed.py [--rows 50000] [--trees 100]   (prints a table, never fails)
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
from monitor.core.config import Columns, Config, FilesSource, MLflowConfig, ModelConfig, RetrainOptions  # noqa: E402
from retrain import Trigger, run_retrain  # noqa: E402
from retrain.baseline import register_baseline  # noqa: E402

NOW = datetime(2024, 3, 1, tzinfo=timezone.utc)


def world(root: Path, rows: int, trees: int) -> tuple[Config, ModelConfig]:
    """bench/compress.py's seeded 30-column binary set (27 numerical, 3 categorical) as a
    prediction log: `rows` labelled rows over the last 5 days, predicted by a champion
    RandomForest(`trees`) fitted on 3,000 rows of the same set before them."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import compress as compress_bench

    frame, numerical, categorical = compress_bench.dataset(rows + 3000)
    features = numerical + categorical
    columns = Columns(timestamp="ts", id="id", prediction="prediction", target="y", numerical=numerical, categorical=categorical)
    model = ModelConfig(name="wide", source=FilesSource(type="files", path=str(root / "logs" / "*.parquet")),
                        columns=columns, task="binary_classification",
                        retrain=RetrainOptions(min_labelled_rows=1000, training_window=timedelta(days=7)))
    config = Config(mlflow=MLflowConfig(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifact_root=str(root / "artifacts")),
                    models=[model])
    frame["ts"] = NOW - timedelta(days=5) + (timedelta(days=5) / len(frame)) * np.arange(len(frame))
    frame["id"] = np.arange(len(frame))
    before, after = frame.iloc[:3000], frame.iloc[3000:].reset_index(drop=True)
    champion = Pipeline([("columns", ColumnTransformer([("num", StandardScaler(), numerical),
                                                        ("cat", OneHotEncoder(handle_unknown="ignore"), categorical)])),
                         ("model", RandomForestClassifier(n_estimators=trees, n_jobs=1, random_state=0))])
    champion.fit(before[features], before["y"])
    logged = lambda rows: rows.assign(prediction=champion.predict(rows[features]))  # noqa: E731
    register_baseline(config, model, champion, logged(before.iloc[:2400]), logged(before.iloc[2400:]))
    (root / "logs").mkdir()
    logged(after).to_parquet(root / "logs" / "part-0.parquet", index=False)
    return config, model


def coarse(marks: list[tuple[float, str]], started: float, ended: float) -> dict[str, float]:
    """Stage times from the progress lines alone (for code without `stage_seconds`)."""
    at = lambda test: next((t for t, line in marks if test(line)), None)  # noqa: E731
    cuts = [("reading", started), ("training", at(lambda text: text.startswith("training "))),
            ("compressing", at(lambda text: text.startswith("compressing"))), ("evaluating", at(lambda text: text.startswith("evaluating"))),
            ("registering + promoting", at(lambda text: "all gates passed" in text or "gates failed" in text)), ("end", ended)]
    cuts = [(name, t) for name, t in cuts if t is not None]
    return {name: nxt - t for (name, t), (_, nxt) in zip(cuts, cuts[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--trees", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="driftd-retrain-bench-") as tmp:
        config, model = world(Path(tmp), args.rows, args.trees)
        marks: list[tuple[float, str]] = []
        load_before = os.getloadavg()[0]
        cpu_before = os.times()
        started = time.perf_counter()
        outcome = run_retrain(config, model, Trigger(None, None, None, None, "bench"), now=NOW,
                              progress=lambda line: marks.append((time.perf_counter(), line)))
        total = time.perf_counter() - started
        cpu = sum(os.times()[:4]) - sum(cpu_before[:4])
        load_after = os.getloadavg()[0]
    for _, line in marks:
        print(f"  | {line}")
    print(f"\nretrain of RandomForest({args.trees}) on {args.rows} rows: {outcome.outcome} ({outcome.variant}); "
          f"cores {len(os.sched_getaffinity(0))}, load average {load_before:.1f} before / {load_after:.1f} after "
          f"({'quiet' if max(load_before, load_after) < 1.5 else 'loaded'})")
    print(f"{'stage':40} {'seconds':>8}")
    print("-" * 49)
    stages = getattr(outcome, "stage_seconds", None) or coarse(marks, started, started + total)
    parts = {k.split(": ", 1)[1]: v for k, v in stages.items() if k.startswith("compressing: ")}
    for stage, seconds in stages.items():
        if not stage.startswith("compressing: "):
            print(f"{stage:40} {seconds:8.1f}")
        if stage == "compressing" and parts:
            print("\n".join(f"{'  ' + part:40} {seconds:8.1f}" for part, seconds in parts.items()))
    print(f"{'total (run_retrain)':40} {total:8.1f}")
    print(f"{'  CPU seconds of it (load-independent)':40} {cpu:8.1f}")
    print(f"{'peak RSS (MB)':40} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:8.0f}")


if __name__ == "__main__":
    main()
