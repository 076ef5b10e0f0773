"""How many models can one daemon keep up with? N models x 20 features on the real Daemon.

Each model: 12 numerical + 8 categorical features, a 20,000-row reference (Parquet), 5,000-row
windows (`window.size` = the cadence, rows written at 5,000 per cadence), `lateness: 0s`,
`lookback: 0s`, no target (drift only), retrain off. All models read the same SQLite table
(indexed on ts, id) and write one SQLite state store. Rows are written up front for the
whole run with timestamps one after another, so no writer competes for the cores: a check
only sees rows whose time has come (its window ends at the live edge).

Time is compressed by a short cadence: the load is N / cadence checks per second, so
N = 50 at a 15-s cadence is the load of 1,000 models at a 5-minute cadence (3.33 checks/s).
Printed per run: checks/s, check lag p50/p99 (window end -> result published), queue delay
p50/p99 (scheduled -> started), max staleness (longest gap between a model's consecutive
results, and the wait for its first, in intervals), time until every model had its first
check, peak RSS, load average. `--profile` also runs one check under cProfile and prints
where its time goes.

Run: .venv/bin/python bench/capacity.py --models 50 --cadence 15 --intervals 4 [--workers N] [--profile]

`--processes N|auto` runs the local executor's checks in N worker processes
(monitor.service.executors.pool) and also prints the peak RSS and CPU% of the daemon with its workers.

`--table` runs N = 100, 300, 1,000 models (`--sizes`), each in a fresh process, at the cadence
that gives every run the load of 1,000 models at a 5-minute cadence (cadence = N x 0.3 s: 30 s,
90 s, 300 s; `--equivalent`), so the 1,000-model run is the real thing (every model loaded, its
reference prepared and calibrated in this process), and prints one row per N: checks/s, lag
p50/p99, max staleness, when every first check was done, peak RSS, the daemon's CPU share.

    .venv/bin/python bench/capacity.py --table [--sizes 100 300 1000] [--intervals 3]

`--executor ray` runs the checks as Ray tasks (monitor.service.executors.ray): on the cluster at
`--ray-address`, or on one the bench starts on loopback (`--ray-cpus` for the head, and
`--ray-node-cpus` for a second node joining it; Ray 2.60 lets no node join a head that listens on
127.0.0.1 only, so with a second node the cluster listens on all interfaces). It also prints the daemon's own CPU% (with Ray it
schedules and records only), Ray's added latency per check (round trip minus the task's own time)
and where the checks ran.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.core.config import load_config  # noqa: E402
from monitor.core.logs import setup_logging  # noqa: E402

NUMERICAL = [f"n{i}" for i in range(12)]
CATEGORICAL = [f"c{i}" for i in range(8)]
WINDOW_ROWS, REFERENCE_ROWS = 5_000, 20_000


def frame(n: int, start: datetime, every: timedelta, first_id: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {"ts": pd.Timestamp(start) + pd.to_timedelta(np.arange(n) * every.total_seconds(), unit="s"),
            "id": np.arange(first_id, first_id + n)}
    for i, name in enumerate(NUMERICAL):
        data[name] = rng.normal(i, 1 + i / 4, n)
    for i, name in enumerate(CATEGORICAL):
        levels = np.array([f"v{k}" for k in range(3 + i)])
        data[name] = rng.choice(levels, n)
    data["prediction"] = rng.integers(0, 2, n)
    return pd.DataFrame(data)


def write_world(directory: Path, models: int, cadence: float, intervals: int, workers: int | None, start: datetime,
                executor: dict | None = None) -> Path:
    frame(REFERENCE_ROWS, start - timedelta(days=30), timedelta(seconds=1), 0, seed=1).to_parquet(directory / "reference.parquet", index=False)
    every = timedelta(seconds=cadence / WINDOW_ROWS)
    first = start - timedelta(seconds=cadence)  # one window before the start, then the whole run
    rows = int(WINDOW_ROWS * (intervals + 3))
    engine = sa.create_engine(f"sqlite:///{directory / 'logs.db'}")
    frame(rows, first, every, 10_000_000, seed=2).to_sql("predictions", engine, index=False, chunksize=50_000)
    with engine.begin() as conn:
        conn.execute(sa.text("create index predictions_ts on predictions (ts, id)"))
    engine.dispose()
    config = {
        "state_url": f"sqlite:///{directory / 'state.db'}",
        "mlflow": {"tracking_uri": f"sqlite:///{directory / 'mlruns' / 'mlflow.db'}"},
        "server": {"port": 0},
        "logging": {"level": "WARNING"},
        "defaults": {"schedule": {"every": f"{cadence}s"},
                     "window": {"size": f"{cadence}s", "lateness": "0s", "lookback": "0s"},
                     "retrain": {"enabled": False}},
        "models": [{
            "name": f"m{i:04d}", "reference": str(directory / "reference.parquet"),
            "source": {"type": "sql", "url": f"sqlite:///{directory / 'logs.db'}", "table": "predictions"},
            "columns": {"timestamp": "ts", "id": "id", "prediction": "prediction",
                        "numerical": NUMERICAL, "categorical": CATEGORICAL},
            "task": "binary_classification",
        } for i in range(models)],
    }
    if workers:
        config["daemon"] = {"workers": workers}
    if executor:
        config["executor"] = executor
    path = directory / "driftd.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def process_sample(pids: list[int]) -> tuple[float, float]:
    """(RSS MiB summed, CPU seconds summed) of these processes now (from /proc; gone ones count 0)."""
    rss = cpu = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        rss += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0) / 1024
        cpu += (int(stat[11]) + int(stat[12])) / tick  # utime, stime
    return rss, cpu


def peak_rss_mib() -> float:
    return rss_mib("VmHWM")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run(args: argparse.Namespace) -> None:
    if args.executor == "ray" and not args.ray_address:  # a cluster of our own on loopback, ended by its PIDs
        from monitor.demo.ray_cluster import ray_cluster

        # A second node needs a head Ray lets others join: that one listens on all interfaces (monitor.demo.ray_cluster).
        with ray_cluster(num_cpus=args.ray_cpus, loopback_only=not args.ray_node_cpus) as cluster:
            if args.ray_node_cpus:
                cluster.start_node(num_cpus=args.ray_node_cpus)
            args.ray_address = cluster.address
            print(f"Ray cluster at {cluster.address}: head {args.ray_cpus} CPUs" + (
                f" + a node with {args.ray_node_cpus} (listening on all interfaces)" if args.ray_node_cpus else " (listening on 127.0.0.1 only)"))
            return run(args)
    from monitor.service.daemon import Daemon

    try:
        from monitor.service.daemon import default_workers
    except ImportError:  # the daemon before monitor.service.scheduler (one thread per model), for comparison
        default_workers = lambda: args.models  # noqa: E731

    with tempfile.TemporaryDirectory(prefix="driftd-capacity-") as tmp:
        directory = Path(tmp)
        (directory / "mlruns").mkdir()
        start = datetime.now(timezone.utc)
        executor = ({"type": "ray", "address": args.ray_address} if args.executor == "ray" else
                    {"type": "local", "processes": args.processes} if args.processes is not None else None)
        config = load_config(write_world(directory, args.models, args.cadence, args.intervals, args.workers, start, executor))
        daemon = Daemon(config)
        published: list[tuple[str, float, float, str]] = []  # model, at (epoch s), lag s, status
        nodes: dict[str, int] = {}  # where the checks ran (Ray node id -> checks)
        lock = threading.Lock()
        publish = daemon.metrics.publish_check

        def record(result):  # observe what the daemon publishes, then publish it
            at = time.time()
            with lock:
                published.append((result.model, at, at - result.window_end.timestamp(), result.status.value))
                node = (result.details.get("executor") or {}).get("node_id", "this process")
                nodes[node] = nodes.get(node, 0) + 1
            return publish(result)

        daemon.metrics.publish_check = record
        load_before = os.getloadavg()[0]
        cpu_before = os.times()
        began = time.time()
        daemon.start()
        deadline = began + args.cadence * args.intervals
        pool = getattr(daemon.executor, "pool", None)
        peak_total, worker_cpu = 0.0, {}  # RSS of the daemon + its check workers; each worker's last CPU seconds
        try:
            while time.time() < deadline:
                time.sleep(0.5)
                pids = pool.pids() if pool is not None else []
                peak_total = max(peak_total, process_sample([os.getpid(), *pids])[0])
                worker_cpu.update({pid: process_sample([pid])[1] for pid in pids})
        finally:
            daemon.stop()
        ended = time.time()
        cpu_after = os.times()
        load_after = os.getloadavg()[0]
        rss_end = rss_mib("VmRSS")
        overheads = list(getattr(daemon.executor, "overheads", []))
        delays = list(getattr(getattr(daemon._scheduler, "queue", None), "delays", []))
    checks = [p for p in published if p[3] in ("ok", "drift")]
    by_model: dict[str, list[float]] = {}
    for model, at, _, _ in sorted(published, key=lambda p: p[1]):
        by_model.setdefault(model, []).append(at)
    firsts = [times[0] - began for times in by_model.values()]
    gaps = [max([times[0] - began, *np.diff(times), ended - times[-1]]) / args.cadence for times in by_model.values()]
    never = args.models - len(by_model)
    lags = [p[2] for p in checks]
    workers = args.workers or default_workers()
    print(f"\nN={args.models} models, cadence {args.cadence:g} s ({args.models / args.cadence:.2f} checks/s needed = "
          f"{args.models / args.cadence * 300:.0f} models at a 5-min cadence), {workers} workers, {args.intervals} intervals "
          f"({ended - began:.0f} s); load average {load_before:.1f} before / {load_after:.1f} after "
          f"({'quiet' if max(load_before, load_after) < 2.5 else 'loaded'}), {os.cpu_count()} cores")
    print(f"{'checks/s (ok+drift)':34} {len(checks) / (ended - began):8.2f}   ({len(checks)} checks, "
          f"{len(published) - len(checks)} other results: {sorted({p[3] for p in published} - {'ok', 'drift'})})")
    print(f"{'check lag p50 / p99 (s)':34} {percentile(lags, 50):8.2f} / {percentile(lags, 99):.2f}")
    print(f"{'queue delay p50 / p99 (s)':34} {percentile(delays, 50):8.2f} / {percentile(delays, 99):.2f}")
    print(f"{'max staleness (intervals)':34} {max(gaps, default=float('nan')):8.2f}   (models never checked: {never})")
    print(f"{'all first checks after (s)':34} {max(firsts, default=float('nan')):8.1f}   "
          f"({max(firsts, default=float('nan')) / args.cadence:.2f} intervals)" if not never else
          f"{'all first checks after (s)':34} {'never':>8}   ({never} models had none)")
    cpu = (cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system) / (ended - began)
    print(f"{'peak RSS / at the end (MiB)':34} {peak_rss_mib():8.0f} / {rss_end:.0f}")
    print(f"{'daemon process CPU (share of one core)':34} {cpu:8.0%}   ({cpu * (ended - began) / max(len(published), 1):.3f} CPU-s per result; "
          f"executor {args.executor}: Ray's driver and workers not included)")
    if worker_cpu:
        total_cpu = cpu * (ended - began) + sum(worker_cpu.values())
        print(f"{'peak RSS daemon + workers (MiB)':34} {peak_total:8.0f}   ({len(worker_cpu)} check worker processes, sampled every 0.5 s)")
        print(f"{'CPU% daemon + workers':34} {100 * total_cpu / (ended - began):8.0f}   "
              f"({total_cpu / max(len(published), 1):.3f} CPU-s per result, start-up and first checks included)")
    if overheads:
        seen: set[str] = set()
        steady = [s for m, s in overheads if m in seen or seen.add(m)]  # without each model's first (its reference put, workers warming up)
        every = [s for _, s in overheads]
        print(f"{'Ray added latency p50 / p90 (ms)':34} {1000 * percentile(steady, 50):8.1f} / {1000 * percentile(steady, 90):.1f}"
              f"   (round trip minus the task's own time, {len(steady)} checks after each model's first; includes waiting for a free CPU)")
        print(f"{'  ... with the first checks':34} {1000 * percentile(every, 50):8.1f} / {1000 * percentile(every, 90):.1f}")
    print(f"{'results by node':34} {', '.join(f'{n[:8]}: {c}' for n, c in sorted(nodes.items()))}")
    if args.json:
        print("JSON " + json.dumps({
            "models": args.models, "cadence": args.cadence, "intervals": args.intervals, "workers": workers,
            "seconds": ended - began, "checks_per_s": len(checks) / (ended - began), "needed_per_s": args.models / args.cadence,
            "lag_p50": percentile(lags, 50), "lag_p99": percentile(lags, 99), "delay_p99": percentile(delays, 99),
            "staleness": max(gaps, default=float("nan")), "never": never,
            "first_done": max(firsts, default=float("nan")) if not never else None,
            "rss_peak": peak_rss_mib(), "rss_end": rss_end, "cpu": cpu, "load": [load_before, load_after],
            "cpu_per_result": cpu * (ended - began) / max(len(published), 1),
            "other": len(published) - len(checks)}))


def profile_one(args: argparse.Namespace) -> None:
    """One model's check under cProfile, its reference already prepared (as in steady state)."""
    import cProfile
    import pstats

    from monitor.service.daemon import Daemon

    with tempfile.TemporaryDirectory(prefix="driftd-capacity-") as tmp:
        directory = Path(tmp)
        (directory / "mlruns").mkdir()
        start = datetime.now(timezone.utc) - timedelta(seconds=3 * args.cadence)
        config = load_config(write_world(directory, 2, args.cadence, 3, 1, start))
        daemon = Daemon(config)
        model = config.models[0]
        began = time.perf_counter()
        daemon.references.get(config.models[1])  # the first reference also imports Evidently: once per process
        imported = time.perf_counter()
        daemon.references.get(model)  # prepared once per model, by its first check
        prepared = time.perf_counter()
        print(f"\nfirst reference of the process (with imports) {imported - began:.2f} s; "
              f"every further model: prepare a {REFERENCE_ROWS}-row reference {prepared - imported:.2f} s")

        profiler = cProfile.Profile()
        profiler.enable()
        started = time.perf_counter()
        daemon.tick(model)  # catches up the windows since `start`, one by one
        took = time.perf_counter() - started
        profiler.disable()
        windows = [c for c in daemon.store.recent_checks(model.name, 100) if c.status.value in ("ok", "drift")]
        daemon.stop()
    stats = pstats.Stats(profiler)
    print(f"\n{len(windows)} steady-state checks of 5k-row windows ({[c.rows for c in windows]} rows), 20 features: "
          f"{took:.3f} s wall, {took / max(len(windows), 1):.3f} s per check")
    groups = {"drift statistics (monitor.check.drift)": "monitor/check/drift.py", "validation (monitor.check.validate)": "monitor/check/validate.py",
              "reading (monitor.sources)": "monitor/sources/", "quality (monitor.check.run.quality)": "monitor/check/quality.py",
              "state commit (monitor.state.store)": "monitor/state/store.py", "late rows (monitor.check.run.late)": "monitor/check/late.py",
              "sampling (monitor.check.run.sample)": "monitor/check/sample.py", "metrics (monitor.observe.metrics)": "monitor/observe/metrics.py"}
    print(f"{'stage (per check; cumulative time of its entry points)':48} {'s':>7} {'share':>6}")
    for label, path in groups.items():
        # the outermost functions of each module: cumulative time of calls coming from outside it
        cum = 0.0
        for (file, _, _), (_, _, _, ct, callers) in stats.stats.items():
            if path in file and not any(path in caller[0] for caller in callers):
                cum += ct
        print(f"{label:48} {cum / max(len(windows), 1):7.3f} {cum / took:6.0%}")
    if args.profile_top:
        stats.sort_stats("cumulative").print_stats(args.profile_top)


def table(args: argparse.Namespace) -> None:
    """One fresh process per N, each at the load of 1,000 models at a 5-minute cadence."""
    rows = []
    for n in args.sizes:
        cadence = n * args.equivalent / 1000
        command = [sys.executable, __file__, "--models", str(n), "--cadence", f"{cadence:g}", "--intervals", str(args.intervals), "--json"]
        if args.workers:
            command += ["--workers", str(args.workers)]
        print(f"$ {' '.join(command[1:])}", flush=True)
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        print(done.stdout.replace("JSON ", "  json: "), done.stderr[-2000:], flush=True)
        found = [json.loads(line[5:]) for line in done.stdout.splitlines() if line.startswith("JSON ")]
        if found:
            rows.append(found[0])
    print(f"\nEvery run at the load of 1,000 models at a {args.equivalent:g}-s cadence ({1000 / args.equivalent:.2f} checks/s); "
          f"{os.cpu_count()} cores; load average before/after each run in the last column")
    print("| N | cadence | checks/s (needed) | lag p50 / p99 | queue delay p99 | max staleness | all first checks done | "
          "peak RSS | daemon CPU (CPU-s per check) | load |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        first = f"{r['first_done']:.0f} s ({r['first_done'] / r['cadence']:.2f} intervals)" if r["first_done"] is not None else f"{r['never']} never"
        print(f"| {r['models']} | {r['cadence']:g} s | {r['checks_per_s']:.2f} ({r['needed_per_s']:.2f}) | {r['lag_p50']:.1f} / {r['lag_p99']:.1f} s | "
              f"{r['delay_p99']:.1f} s | {r['staleness']:.2f} intervals | {first} | {r['rss_peak'] / 1024:.2f} GiB | {r['cpu']:.0%} ({r['cpu_per_result']:.2f}) | "
              f"{r['load'][0]:.1f}/{r['load'][1]:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--cadence", type=float, default=15.0, help="seconds between a model's checks (and window size)")
    parser.add_argument("--intervals", type=int, default=4, help="how long to run, in cadences")
    parser.add_argument("--workers", type=int, default=None, help="default: the daemon's (two per core)")
    parser.add_argument("--executor", choices=("local", "ray"), default="local")
    parser.add_argument("--processes", type=lambda v: v if v == "auto" else int(v), default=None,
                        help="with --executor local: executor.processes (auto, N, 0 = threads); default: the config's")
    parser.add_argument("--ray-address", default=None, help="with --executor ray: a running cluster (host:port, ray://host:port, auto)")
    parser.add_argument("--ray-cpus", type=int, default=2, help="without --ray-address: CPUs of the head the bench starts")
    parser.add_argument("--ray-node-cpus", type=int, default=0, help="without --ray-address: CPUs of a second node joining it")
    parser.add_argument("--profile", action="store_true", help="profile one steady-state check instead")
    parser.add_argument("--profile-top", type=int, default=0, help="with --profile: print the N top functions too")
    parser.add_argument("--table", action="store_true", help="run --sizes models, one fresh process each, and print a table")
    parser.add_argument("--sizes", type=int, nargs="*", default=[100, 300, 1000])
    parser.add_argument("--equivalent", type=float, default=300.0, help="with --table: the cadence 1,000 models would have (s)")
    parser.add_argument("--json", action="store_true", help="also print the run's figures as one JSON line")
    args = parser.parse_args()
    setup_logging("WARNING")
    if args.table:
        table(args)
    elif args.profile:
        profile_one(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
