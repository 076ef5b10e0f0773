"""How many rows does the watermark lose to writers that commit late? The issue's fault battery:
three writers append to a PostgreSQL table, each batch stamped when it is made and committed 0-3 s
later (a transaction held open), while the real daemon checks every `--every` seconds with
`lateness: 0s`. Every row id is then looked up in what the state store recorded as checked.

    python bench/late_rows.py [--seconds 40] [--every 1.0] [--lookback 0s,1h] [--overhead 100000,1000000]

Prints, per look-back, rows written, checked once, checked twice, late rows found, and rows lost;
then what the look-back costs a check per number of rows inside it (Parquet source): the keys
re-read, hashed and compared with the bookkeeping, and the size of one window's bookkeeping.
Needs PostgreSQL at 127.0.0.1:5432 (database `test`, trust auth), as the integration tests do.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.check.late import decode, key_hashes  # noqa: E402
from monitor.core.config import parse_config  # noqa: E402
from monitor.core.results import CheckStatus  # noqa: E402
from monitor.demo.synthetic import CATEGORICAL, NUMERICAL, PredictionTable, columns, predictions  # noqa: E402
from monitor.service.daemon import Daemon  # noqa: E402
from monitor.state.schema import seen_keys  # noqa: E402

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"  # as the integration tests use


def config(directory: Path, table: str, lookback: str, every: float):
    predictions(3000, seed=12345).to_parquet(directory / "reference.parquet", index=False)
    return parse_config({
        "state_url": f"sqlite:///{directory / 'state.db'}",
        "mlflow": {"tracking_uri": f"sqlite:///{directory / 'mlflow.db'}"},
        "models": [{
            "name": "churn", "reference": "reference.parquet", "task": "binary_classification",
            "source": {"type": "sql", "url": PG_URL, "table": table},
            "columns": {"timestamp": "ts", "id": "id", "prediction": "prediction", "probability": "probability",
                        "target": "target", "numerical": NUMERICAL, "categorical": CATEGORICAL},
            "schedule": {"every": f"{every}s"},
            "window": {"size": "1h", "min_rows": 50, "lateness": "0s", "lookback": lookback},
            "retrain": {"enabled": False},
        }],
    }, base_dir=directory)


def run(lookback: str, seconds: float, every: float) -> dict[str, float]:
    table = PredictionTable(PG_URL)
    ids, lock, written = itertools.count(), threading.Lock(), []
    stop = threading.Event()

    def writer(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            with lock:
                first = next(ids)
                for _ in range(19):
                    next(ids)
            now = datetime.now(timezone.utc)
            frame = predictions(20, seed=first, start=now.replace(microsecond=now.microsecond // 1000 * 1000) - timedelta(milliseconds=20),
                                every=timedelta(milliseconds=1), first_id=first)
            with table.engine.begin() as conn:
                conn.execute(table.table.insert(), frame.to_dict("records"))
                stop.wait(float(rng.uniform(0, 3)))
            with lock:
                written.append(frame)

    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(config(Path(tmp), table.name, lookback, every))
        model = daemon.config.model("churn")
        threads = [threading.Thread(target=writer, args=(s,)) for s in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            daemon.tick(model)
            time.sleep(every)
        stop.set()
        for t in threads:
            t.join()
        flush = predictions(60, seed=7, start=datetime.now(timezone.utc) - timedelta(seconds=1), every=timedelta(milliseconds=1),
                            first_id=10_000_000)
        with table.engine.begin() as conn:
            conn.execute(table.table.insert(), flush.to_dict("records"))
        written.append(flush)
        for _ in range(5):  # catch up on the last windows
            daemon.tick(model)
        with daemon.store.engine.connect() as conn:
            blobs = [decode(r.hashes) for r in conn.execute(sa.select(seen_keys.c.hashes))]
        recorded = Counter(int(h) for h in (np.concatenate(blobs) if blobs else []))
        checks = daemon.store.recent_checks("churn", 100_000)
        rows_checked = sum(c.rows for c in checks if c.status in (CheckStatus.OK, CheckStatus.DRIFT))
        late = sum(c.late_rows for c in checks if c.status in (CheckStatus.OK, CheckStatus.DRIFT))
        daemon.stop()
    table.drop()
    frame = pd.concat(written, ignore_index=True)
    keys = key_hashes(frame, columns()).tolist()
    once = sum(recorded[k] == 1 for k in keys)
    twice = sum(recorded[k] > 1 for k in keys)
    lost = len(frame) - rows_checked if lookback == "0s" else sum(recorded[k] == 0 for k in keys)
    return {"written": len(frame), "checked": rows_checked, "once": once, "twice": twice, "late": late, "lost": lost}


def overhead(rows: int) -> dict[str, float]:
    from monitor.check.late import Audit, find_late, seen_block
    from monitor.core.config import FilesSource
    from monitor.core.results import Watermark
    from monitor.sources import open_source

    with tempfile.TemporaryDirectory() as tmp:
        end = datetime.now(timezone.utc)
        frame = predictions(rows, seed=1, start=end - timedelta(minutes=50), every=timedelta(minutes=50) / rows)
        frame.to_parquet(Path(tmp) / "p.parquet", index=False)
        source = open_source(FilesSource(type="files", path=f"{tmp}/*.parquet"), columns())
        last = frame.iloc[-1]
        mark = Watermark(pd.Timestamp(last["ts"]), int(last["id"]))
        audit = Audit(pd.Timestamp(end - timedelta(hours=1)), np.sort(key_hashes(frame, columns())))
        wanted = tuple(frame.columns)
        started = time.perf_counter()
        late = find_late(source, columns(), wanted, mark, audit, lookback_ns=3600 * 10**9)
        find_s = time.perf_counter() - started
        started = time.perf_counter()
        block = seen_block(frame, columns(), mark, audit.audit_from, 3600 * 10**9)
        blob = block.encoded()
        seen_s = time.perf_counter() - started
    assert late.empty
    return {"find_s": find_s, "seen_s": seen_s, "blob_mb": len(blob) / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--every", type=float, default=1.0)
    parser.add_argument("--lookback", default="0s,1h")
    parser.add_argument("--overhead", default="100000,1000000", help="rows inside the look-back to time (comma-separated)")
    args = parser.parse_args()
    print(f"3 writers, 20-row batches, transactions open 0-3 s, checks every {args.every:g} s, lateness 0s, {args.seconds:g} s")
    print(f"{'lookback':>9} {'written':>8} {'checked':>8} {'late found':>10} {'twice':>6} {'lost':>6} {'lost %':>7}")
    for lookback in filter(None, args.lookback.split(",")):
        r = run(lookback, args.seconds, args.every)
        print(f"{lookback:>9} {r['written']:>8} {r['checked']:>8} {r['late']:>10} {r['twice']:>6} {r['lost']:>6} {100 * r['lost'] / r['written']:>6.1f}%")
    print()
    print("cost of the look-back per check (Parquet source, every row already checked)")
    print(f"{'rows in look-back':>18} {'re-read+compare s':>18} {'bookkeeping s':>14} {'stored MB':>10}")
    for rows in (int(r) for r in args.overhead.split(",") if r):
        o = overhead(rows)
        print(f"{rows:>18} {o['find_s']:>18.2f} {o['seen_s']:>14.2f} {o['blob_mb']:>10.1f}")


if __name__ == "__main__":
    main()
