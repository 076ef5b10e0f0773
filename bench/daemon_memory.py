"""Does the daemon's memory stay flat? Runs N checks of a small model at a fast interval.

The real Daemon (scheduler, SQLite source, drift check, state store, metrics, policy) runs
in this process while a writer thread appends prediction rows; RSS is printed as it goes.

    python bench/daemon_memory.py [--checks 1000] [--interval 0.05]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.core.config import load_config  # noqa: E402
from monitor.core.logs import setup_logging  # noqa: E402
from monitor.demo.synthetic import CATEGORICAL, NUMERICAL, predictions  # noqa: E402
from monitor.service.daemon import Daemon  # noqa: E402


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_config(directory: Path, interval: float) -> Path:
    predictions(3000, seed=1).to_parquet(directory / "reference.parquet", index=False)
    config = {
        "state_url": f"sqlite:///{directory / 'state.db'}",
        "mlflow": {"tracking_uri": f"sqlite:///{directory / 'mlflow.db'}"},
        "server": {"port": 0},
        "logging": {"level": "WARNING"},
        # Short windows and quality span: every check reads a bounded number of rows, so any
        # growth in RSS is the daemon's, not the data's.
        "defaults": {"schedule": {"every": f"{interval}s"}, "window": {"size": "5s", "min_rows": 50, "quality_span": "20s", "lateness": "0s"},
                     "retrain": {"enabled": False}},
        "models": [{
            "name": "small", "reference": str(directory / "reference.parquet"),
            "source": {"type": "sql", "url": f"sqlite:///{directory / 'logs.db'}", "table": "predictions"},
            "columns": {"timestamp": "ts", "id": "id", "prediction": "prediction", "probability": "probability",
                        "target": "target", "numerical": NUMERICAL, "categorical": CATEGORICAL},
            "task": "binary_classification",
        }],
    }
    path = directory / "driftd.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def writer(url: str, stop: threading.Event, every: float) -> None:
    engine = sa.create_engine(url)
    predictions(1, seed=0).iloc[:0].to_sql("predictions", engine, index=False)
    with engine.begin() as conn:
        conn.execute(sa.text("create index predictions_ts on predictions (ts, id)"))
    next_id = 0
    while not stop.wait(every):
        frame = predictions(40, seed=next_id, start=datetime.now(timezone.utc) - timedelta(milliseconds=40),
                            every=timedelta(milliseconds=1), first_id=next_id, shift=(next_id // 8000) % 2)  # drift comes and goes
        frame.to_sql("predictions", engine, if_exists="append", index=False)
        next_id += len(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=0.05)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        setup_logging("WARNING")
        config = load_config(write_config(directory, args.interval))
        stop = threading.Event()
        feed = threading.Thread(target=writer, args=(f"sqlite:///{directory / 'logs.db'}", stop, args.interval / 2), daemon=True)
        feed.start()
        time.sleep(0.5)  # a first batch of rows before the first check
        daemon = Daemon(config)
        daemon.start()
        marks = {10, 100, 250, 500, 750, args.checks}
        rows = []
        started = time.monotonic()
        try:
            while True:
                done = len(daemon.store.recent_checks("small", args.checks + 10))
                if done >= min(marks, default=args.checks + 1):
                    rows.append((done, time.monotonic() - started, rss_mib()))
                    marks = {m for m in marks if m > done}
                if done >= args.checks:
                    break
                time.sleep(0.2)
        finally:
            daemon.stop()
            stop.set()
            feed.join()
        print(f"{'checks':>8} {'seconds':>9} {'RSS MiB':>9}")
        for done, seconds, rss in rows:
            print(f"{done:>8} {seconds:>9.1f} {rss:>9.1f}")
        print(f"RSS growth from check {rows[0][0]} to {rows[-1][0]}: {rows[-1][2] - rows[0][2]:+.1f} MiB; "
              f"over the second half: {rows[-1][2] - next(r for r in rows if r[0] >= args.checks // 2)[2]:+.1f} MiB")


if __name__ == "__main__":
    main()
