"""Benchmark: driftd's drift check against Evidently's DataDriftPreset and plain ValueDrift.

Two tables.

End to end (`--tables e2e`): the `driftd check --json` command on a Parquet window of 10k, 100k,
1M and 10M rows (12 numerical + 8 categorical features, 100k-row reference file, max_rows
200k), each in a fresh process: the command's wall time (imports included), the check's own
`duration_seconds`, and the process's peak RSS (ru_maxrss from wait4). Side by side, in the same
run, DataDriftPreset end to end in its own process: read the same window with pandas, build the
Datasets, run the preset with the same pinned methods and thresholds. The Parquet files are
written once into --data (default /tmp/driftd-bench-e2e) and reused.

Drift statistics (`--tables stats`): data seeded, 10 numerical + 10 categorical features, a 100k-row reference and windows of 100k
and 1M rows in which 6 features are shifted (3 clearly, 3 near the threshold).

Variants, for each window:
  driftd       sample_rows (max_rows) + check_drift, as the daemon runs it; the reference is
               prepared once beforehand (its cost is printed on its own line)
  +HTML        the same, plus building the check's Evidently report (outcome.snapshot), which
               the daemon does only when it stores an HTML report
  ValueDrift   Evidently's own Report of one ValueDrift per column, same methods, on the same
               sampled rows (strings in pandas 3's default str dtype); the agreement reference
  Preset       Evidently's DataDriftPreset on the whole window, the same methods and thresholds
               pinned through num_method/cat_method/num_threshold/cat_threshold

Every variant runs in a forked child of one warm process (Evidently and plotly already imported,
data already generated), so timings exclude imports and data generation. Fast variants run
--repeat times in their child and report the best wall and CPU time (the machine is shared).
Memory is the child's peak RSS (ru_maxrss from wait4) minus that of an idle forked child: what
the variant added on top of the data it was handed.

    python bench/drift_check.py [--tables e2e,stats] [--e2e-sizes 10000,100000,1000000,10000000]
                                [--preset-max 1000000] [--skip-preset-1m] [--max-rows 200000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.check.drift import PreparedReference, check_drift, prepare_reference  # noqa: E402
from monitor.check.sample import sample_rows  # noqa: E402
from monitor.core.config import ModelConfig, parse_config  # noqa: E402

NUMERICAL = [f"num_{i}" for i in range(10)]
CATEGORICAL = [f"cat_{i}" for i in range(10)]
FEATURES = NUMERICAL + CATEGORICAL
REFERENCE_ROWS = 100_000
SEED = 20240501
# shift per feature index: 3 clear shifts, 3 close to the 0.1 thresholds, the rest untouched
NUM_SHIFT = {0: 0.5, 1: 0.3, 2: 0.1}  # in standard deviations (normed Wasserstein ~ shift)
CAT_TILT = {0: 0.25, 1: 0.12, 2: 0.06}  # probability mass moved to the rarest level


@dataclass
class Row:
    window: int
    variant: str
    rows_used: int
    seconds: float
    cpu: float
    peak_mb: float
    verdicts: dict[str, bool] = field(default_factory=dict)
    note: str = ""


@dataclass
class Measured:
    seconds: float
    cpu: float
    rows: int
    verdicts: dict[str, bool]
    peak_mb: float = 0.0


def timed(run: Callable[[], tuple[int, dict[str, bool]]], repeat: int) -> Measured:
    """Best wall and CPU time of `repeat` runs."""
    best = Measured(float("inf"), float("inf"), 0, {})
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        rows, verdicts = run()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        best = Measured(min(best.seconds, wall), min(best.cpu, cpu), rows, verdicts)
    return best


def make_frame(n: int, seed: int, *, shifted: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for i, name in enumerate(NUMERICAL):
        shift = NUM_SHIFT.get(i, 0.0) if shifted else 0.0
        kind = i % 3  # a mix of shapes: normal, lognormal, uniform
        if kind == 0:
            data[name] = rng.normal(10.0 + shift * 2.0, 2.0, n)
        elif kind == 1:
            base = rng.lognormal(1.0, 0.5, n)
            data[name] = base + shift * 1.58  # std of lognormal(1, 0.5) is ~1.58
        else:
            data[name] = rng.uniform(0.0, 1.0, n) + shift * 0.2887  # std of U(0, 1)
    for i, name in enumerate(CATEGORICAL):
        levels = np.array([f"{name}_v{j}" for j in range(4 + 3 * i)], dtype=object)
        p = np.linspace(2.0, 1.0, len(levels))
        p /= p.sum()
        if shifted and i in CAT_TILT:
            tilt = CAT_TILT[i]
            p = p * (1 - tilt)
            p[-1] += tilt
        data[name] = levels[rng.choice(len(levels), n, p=p)]
    data["prediction"] = (data["num_3"] > 10.0).astype("int64")
    return pd.DataFrame(data)


def model_config() -> ModelConfig:
    columns = {"timestamp": "ts", "id": "id", "prediction": "prediction", "numerical": NUMERICAL, "categorical": CATEGORICAL}
    model = {"name": "bench", "source": {"type": "files", "path": "unused/*.parquet"}, "columns": columns, "task": "binary_classification"}
    return parse_config({"models": [model]}, base_dir=Path.cwd()).models[0]


def definition() -> Any:
    from evidently import DataDefinition

    return DataDefinition(numerical_columns=NUMERICAL, categorical_columns=CATEGORICAL, text_columns=[], datetime_columns=[], unknown_columns=[], list_columns=[])


def statuses(snapshot: Any) -> dict[str, bool]:
    """Column -> drifted, from every ValueDrift result in a snapshot (also those a preset made)."""
    verdicts = {}
    for result in snapshot.metric_results.values():
        params = result.metric_value_location.metric.params
        if params.get("type") == "evidently:metric_v2:ValueDrift" and result.tests:
            verdicts[params["column"]] = any(t.status.value == "FAIL" for t in result.tests)
    return verdicts


def idle_child_rss_kb() -> int:
    """What a forked child that does nothing reports as its peak: the baseline to subtract
    (a bit below the parent's RSS, as file-backed pages are not mapped into the child)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    return os.wait4(pid, 0)[2].ru_maxrss


def in_child(task: Callable[[], Measured]) -> Measured:
    """Run `task` in a forked child; add the MB it added to what it measured."""
    gc.collect()
    read_end, write_end = os.pipe()
    start_kb = idle_child_rss_kb()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_end)
        try:
            payload = pickle.dumps(("ok", task()))
        except BaseException as exc:  # report, never fall back into the parent's code path
            payload = pickle.dumps(("error", repr(exc)))
        with os.fdopen(write_end, "wb") as out:
            out.write(payload)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as inp:
        status, value = pickle.loads(inp.read())
    _, _, usage = os.wait4(pid, 0)
    if status != "ok":
        raise RuntimeError(f"variant failed in child: {value}")
    value.peak_mb = max(usage.ru_maxrss - start_kb, 0) / 1024
    return value


def driftd_check(reference: PreparedReference, window: pd.DataFrame, model: ModelConfig, max_rows: int, repeat: int, *, html: bool = False):
    def run():
        sample, _ = sample_rows(window, max_rows, seed=SEED)
        outcome = check_drift(reference, sample, model)
        if html:
            outcome.snapshot.get_html_str(as_iframe=False)
        return len(sample), {f.feature: f.drifted for f in outcome.features}

    return lambda: timed(run, repeat)


def plain_value_drift(reference_ds: Any, window: pd.DataFrame, max_rows: int, repeat: int):
    from evidently import Dataset, Report
    from evidently.metrics import ValueDrift

    def task():
        sample, _ = sample_rows(window, max_rows, seed=SEED)  # the very rows driftd checks
        metrics = [ValueDrift(column=c, method="wasserstein", threshold=0.1) for c in NUMERICAL]
        metrics += [ValueDrift(column=c, method="jensenshannon", threshold=0.1) for c in CATEGORICAL]

        def run():
            current = Dataset.from_pandas(sample[FEATURES], data_definition=definition())
            snapshot = Report(metrics, include_tests=True).run(current, reference_ds)
            return len(sample), statuses(snapshot)

        return timed(run, repeat)

    return task


def preset(reference_ds: Any, window: pd.DataFrame, repeat: int):
    from evidently import Dataset, Report
    from evidently.presets import DataDriftPreset

    def run():
        current = Dataset.from_pandas(window[FEATURES], data_definition=definition())
        report = Report(
            [DataDriftPreset(num_method="wasserstein", cat_method="jensenshannon", num_threshold=0.1, cat_threshold=0.1, drift_share=0.3)],
            include_tests=True,
        )
        return len(window), statuses(report.run(current, reference_ds))

    return lambda: timed(run, repeat)


def warm_up(model: ModelConfig, reference_frame: pd.DataFrame) -> None:
    """Pay Evidently's and plotly's first-use imports once, in the parent, before any timing."""
    from evidently import Dataset, Report
    from evidently.presets import DataDriftPreset

    small = reference_frame.head(500)
    check_drift(prepare_reference(small, model, "warm"), small, model)
    ds = Dataset.from_pandas(small[FEATURES], data_definition=definition())
    Report([DataDriftPreset(num_method="wasserstein", cat_method="jensenshannon")], include_tests=True).run(ds, ds)


def fmt_agree(ours: dict[str, bool], theirs: dict[str, bool]) -> str:
    return f"{sum(ours[c] == theirs.get(c) for c in FEATURES)}/{len(FEATURES)}"


# --- end to end ---------------------------------------------------------------------------

E2E_NUMERICAL = [f"num_{i}" for i in range(12)]
E2E_CATEGORICAL = [f"cat_{i}" for i in range(8)]
E2E_FEATURES = E2E_NUMERICAL + E2E_CATEGORICAL
E2E_START = pd.Timestamp("2026-01-01T00:00:00Z")
E2E_SPAN = pd.Timedelta(hours=1)
CHUNK = 500_000


def e2e_chunk(n: int, rng: np.random.Generator, *, shifted: bool) -> dict[str, Any]:
    """12 numerical (normal, lognormal, uniform) + 8 categorical (4..25 levels) columns; shifted
    windows move num_0..2 and tilt cat_0..2 as the stats table does."""
    data: dict[str, Any] = {}
    for i, name in enumerate(E2E_NUMERICAL):
        shift = NUM_SHIFT.get(i, 0.0) if shifted else 0.0
        kind = i % 3
        if kind == 0:
            data[name] = rng.normal(10.0 + shift * 2.0, 2.0, n)
        elif kind == 1:
            data[name] = rng.lognormal(1.0, 0.5, n) + shift * 1.58
        else:
            data[name] = rng.uniform(0.0, 1.0, n) + shift * 0.2887
    for i, name in enumerate(E2E_CATEGORICAL):
        levels = [f"{name}_v{j}" for j in range(4 + 3 * i)]
        p = np.linspace(2.0, 1.0, len(levels))
        p /= p.sum()
        if shifted and i in CAT_TILT:
            p = p * (1 - CAT_TILT[i])
            p[-1] += CAT_TILT[i]
        codes = rng.choice(len(levels), n, p=p).astype(np.int32)
        data[name] = pa.DictionaryArray.from_arrays(codes, pa.array(levels)).cast(pa.string())
    data["prediction"] = (data["num_3"] > 10.0).astype("int64")
    return data


def write_window(path: Path, n: int, seed: int, *, shifted: bool) -> None:
    """`n` rows evenly over E2E_SPAN from E2E_START, written in chunks (never all in memory)."""
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    step = E2E_SPAN.value // max(n, 1)
    partial = path.with_name(path.name + ".partial")
    writer = None
    for first in range(0, n, CHUNK):
        size = min(CHUNK, n - first)
        ids = np.arange(first, first + size, dtype=np.int64)
        columns = {"ts": pa.array(E2E_START.value + ids * step, type=pa.timestamp("ns", tz="UTC")), "id": ids, **e2e_chunk(size, rng, shifted=shifted)}
        table = pa.table(columns)
        writer = writer or pq.ParquetWriter(partial, table.schema)
        writer.write_table(table, row_group_size=CHUNK)
    assert writer is not None
    writer.close()
    os.replace(partial, path)


def e2e_data(root: Path, sizes: list[int]) -> tuple[Path, dict[int, Path]]:
    root.mkdir(parents=True, exist_ok=True)
    reference = root / "reference.parquet"
    if not reference.exists():
        write_window(reference, REFERENCE_ROWS, SEED, shifted=False)
    windows = {}
    for n in sizes:
        directory = root / f"window-{n}"
        directory.mkdir(exist_ok=True)
        if not (directory / "logs.parquet").exists():
            write_window(directory / "logs.parquet", n, SEED + n, shifted=True)
        windows[n] = directory
    return reference, windows


def e2e_config(directory: Path, reference: Path, max_rows: int) -> Path:
    import yaml

    model = {
        "name": "bench", "reference": str(reference), "task": "binary_classification",
        "source": {"type": "files", "path": str(directory / "*.parquet")},
        "columns": {"timestamp": "ts", "id": "id", "prediction": "prediction", "numerical": E2E_NUMERICAL, "categorical": E2E_CATEGORICAL},
        "window": {"size": "1h", "max_rows": max_rows},
    }
    path = directory / "driftd.yaml"
    path.write_text(yaml.safe_dump({"mlflow": {"tracking_uri": f"sqlite:///{directory / 'mlflow.db'}"}, "models": [model]}))
    return path


@dataclass
class Run:
    wall: float
    peak_mb: float
    output: str
    error: str
    code: int


def run_measured(command: list[str]) -> Run:
    """Run `command`, returning its wall time and its own peak RSS (ru_maxrss from wait4)."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
        assert proc.stdout is not None
        output = proc.stdout.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        err.seek(0)
        return Run(wall, usage.ru_maxrss / 1024, output, err.read().decode(errors="replace")[-2000:], proc.returncode)


def driftd_e2e(config: Path) -> tuple[Run, dict[str, Any]]:
    since = (E2E_START - pd.Timedelta(seconds=1)).isoformat()
    until = (E2E_START + E2E_SPAN).isoformat()
    run = run_measured([sys.executable, "-m", "monitor.cli", "check", "-c", str(config), "--model", "bench", "--json",
                        "--since", since, "--until", until])
    if run.code not in (0, 1):
        raise RuntimeError(f"driftd check failed ({run.code}): {run.error}")
    return run, json.loads(run.output)


def preset_e2e(directory: Path, reference: Path) -> tuple[Run, dict[str, Any]]:
    run = run_measured([sys.executable, __file__, "--preset-child", str(directory), str(reference)])
    if run.code != 0:
        raise RuntimeError(f"DataDriftPreset child failed ({run.code}): {run.error}")
    return run, json.loads(run.output)


def preset_child(directory: Path, reference: Path) -> None:
    """What a user of Evidently alone does: read the window, build Datasets, run the preset."""
    started = time.perf_counter()
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    imported = time.perf_counter()
    window = pd.read_parquet(directory / "logs.parquet", columns=E2E_FEATURES, filters=[("ts", ">", E2E_START - pd.Timedelta(seconds=1)), ("ts", "<=", E2E_START + E2E_SPAN)])
    ref = pd.read_parquet(reference, columns=E2E_FEATURES)
    definition = DataDefinition(numerical_columns=E2E_NUMERICAL, categorical_columns=E2E_CATEGORICAL, text_columns=[], datetime_columns=[], unknown_columns=[], list_columns=[])
    report = Report([DataDriftPreset(num_method="wasserstein", cat_method="jensenshannon", num_threshold=0.1, cat_threshold=0.1)], include_tests=True)
    snapshot = report.run(Dataset.from_pandas(window, data_definition=definition), Dataset.from_pandas(ref, data_definition=definition))
    verdicts = statuses(snapshot)
    print(json.dumps({"rows": len(window), "import_seconds": imported - started, "own_seconds": time.perf_counter() - imported,
                      "drifted": sorted(c for c, d in verdicts.items() if d)}))


def e2e_table(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.e2e_sizes.split(",")]
    started = time.perf_counter()
    reference, windows = e2e_data(Path(args.data), sizes)
    print(f"end to end: data ready in {time.perf_counter() - started:.0f}s under {args.data}; load {os.getloadavg()[0]:.1f}, cores {os.cpu_count()}")
    header = (f"{'window':>11}  {'driftd wall s':>13} {'own s':>6} {'peak MB':>8} {'drifted':>7} {'sampled':>8}   "
              f"{'Preset wall s':>13} {'own s':>6} {'peak MB':>8} {'drifted':>7}   {'wall ratio':>10} {'own ratio':>9}  {'load':>5}")
    print(header)
    print("-" * len(header))
    for n in sizes:
        config = e2e_config(windows[n], reference, args.max_rows)
        best: tuple[Run, dict[str, Any]] | None = None
        for _ in range(args.e2e_repeat):
            run, result = driftd_e2e(config)
            if best is None or run.wall < best[0].wall:
                best = (run, result)
        assert best is not None
        ours, result = best
        own = float(result["duration_seconds"])
        drifted = sum(f["drifted"] for f in result["features"])
        line = f"{n:>11,}  {ours.wall:>13.2f} {own:>6.2f} {ours.peak_mb:>8.0f} {drifted:>7} {result['rows_used']:>8,}   "
        if n <= args.preset_max:
            theirs, preset = preset_e2e(windows[n], reference)
            line += (f"{theirs.wall:>13.2f} {preset['own_seconds']:>6.2f} {theirs.peak_mb:>8.0f} {len(preset['drifted']):>7}   "
                     f"{theirs.wall / ours.wall:>9.1f}x {preset['own_seconds'] / own:>8.1f}x")
        else:
            line += f"{'skipped (--preset-max)':>38}{'':>33}"
        print(f"{line}  {os.getloadavg()[0]:>5.1f}", flush=True)
    print("driftd wall: the whole `driftd check --json` process (Python start, imports, reference preparation, check);"
          " own: its duration_seconds (read + validate + sample + drift statistics)")
    print("Preset wall: a process that imports Evidently, reads the same window with pandas and runs DataDriftPreset;"
          " own: read + Datasets + preset. Peak MB: each process's ru_maxrss. load: 1-minute load average after the row")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--preset-child":
        preset_child(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", default="e2e,stats", help="which tables: e2e, stats or both (default)")
    parser.add_argument("--e2e-sizes", default="10000,100000,1000000,10000000", help="end-to-end window sizes")
    parser.add_argument("--e2e-repeat", type=int, default=1, help="driftd check runs per end-to-end size; the fastest is shown")
    parser.add_argument("--preset-max", type=int, default=1_000_000, help="largest window DataDriftPreset runs on end to end (10M needs >11 GB)")
    parser.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "driftd-bench-e2e"), help="where the end-to-end Parquet files are kept")
    parser.add_argument("--skip-preset-1m", action="store_true", help="skip DataDriftPreset on the 1M-row window (it takes tens of seconds)")
    parser.add_argument("--max-rows", type=int, default=200_000, help="driftd's window.max_rows (default 200000)")
    parser.add_argument("--sizes", default="100000,1000000", help="window sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=5, help="runs per fast variant; the best is shown (the preset runs once on 1M rows)")
    args = parser.parse_args()
    tables = set(args.tables.split(","))
    if "e2e" in tables:
        e2e_table(args)
    if "stats" not in tables:
        return
    sizes = [int(s) for s in args.sizes.split(",")]

    started = time.perf_counter()
    import evidently  # (import cost is not part of any variant)

    print(f"import evidently: {time.perf_counter() - started:.1f}s   cores: {os.cpu_count()}   pandas {pd.__version__}   evidently {evidently.__version__}")
    model = model_config()
    reference_frame = make_frame(REFERENCE_ROWS, SEED, shifted=False)
    windows = {n: make_frame(n, SEED + n, shifted=True) for n in sizes}
    warm_up(model, reference_frame)

    def prepare() -> tuple[int, dict[str, bool]]:
        prepare_reference(reference_frame, model, "1")
        return REFERENCE_ROWS, {}

    prep = in_child(lambda: timed(prepare, args.repeat))
    prepared = prepare_reference(reference_frame, model, "1")
    from evidently import Dataset

    reference_ds = Dataset.from_pandas(reference_frame[FEATURES], data_definition=definition())

    rows: list[Row] = []

    def add(n: int, variant: str, m: Measured) -> None:
        rows.append(Row(n, variant, m.rows, m.seconds, m.cpu, m.peak_mb, m.verdicts))

    for n in sizes:
        window = windows[n]
        add(n, "driftd (sample+check)", in_child(driftd_check(prepared, window, model, args.max_rows, args.repeat)))
        add(n, "driftd +HTML report", in_child(driftd_check(prepared, window, model, args.max_rows, args.repeat, html=True)))
        add(n, "ValueDrift x20, same rows", in_child(plain_value_drift(reference_ds, window, args.max_rows, args.repeat)))
        if n >= 1_000_000 and args.skip_preset_1m:
            rows.append(Row(n, "DataDriftPreset", n, float("nan"), float("nan"), float("nan"), note="skipped (--skip-preset-1m)"))
        else:
            add(n, "DataDriftPreset (full window)", in_child(preset(reference_ds, window, 1 if n >= 1_000_000 else args.repeat)))

    print(f"\nreference: {REFERENCE_ROWS:,} rows; prepare_reference, once per champion version: {prep.seconds:.2f}s wall, {prep.cpu:.2f}s CPU, +{prep.peak_mb:.0f} MB")
    print(f"shifted features: {[NUMERICAL[i] for i in NUM_SHIFT]} + {[CATEGORICAL[i] for i in CAT_TILT]}; max_rows={args.max_rows:,}\n")
    header = f"{'window':>9}  {'variant':<30} {'rows used':>10} {'wall s':>7} {'CPU s':>7} {'peak +MB':>9} {'drifted':>8}  verdicts agreeing with driftd"
    print(header)
    print("-" * (len(header) + 12))
    ours_by_window = {row.window: row for row in rows if row.variant.startswith("driftd (")}
    for row in rows:
        ours = ours_by_window[row.window]
        if row.note:
            agree, drifted = row.note, ""
        elif row is ours:
            agree, drifted = "-", str(sum(row.verdicts.values()))
        else:
            same_rows = "same rows" if row.rows_used == ours.rows_used else "other rows: the full window"
            agree, drifted = f"{fmt_agree(ours.verdicts, row.verdicts)} ({same_rows})", str(sum(row.verdicts.values()))
        print(f"{row.window:>9,}  {row.variant:<30} {row.rows_used:>10,} {row.seconds:>7.2f} {row.cpu:>7.2f} {row.peak_mb:>9.0f} {drifted:>8}  {agree}")
    print()
    for n, ours in ours_by_window.items():
        full = next((r for r in rows if r.window == n and r.variant.startswith("DataDriftPreset") and not r.note), None)
        if full is not None:
            print(f"window {n:>9,}: driftd's check is {full.seconds / ours.seconds:.0f}x faster than DataDriftPreset in wall time, {full.cpu / ours.cpu:.0f}x in CPU time")
    print(f"\npeak +MB: the variant's forked child's ru_maxrss minus an idle forked child's; process ru_maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print("CPU s above wall s: OpenBLAS worker threads spin after numpy's dot products; OPENBLAS_NUM_THREADS=1 brings them level")


if __name__ == "__main__":
    main()
