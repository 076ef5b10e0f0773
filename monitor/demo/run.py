"""The demo's run: baseline, production, the real daemon, live progress, and the summary."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta
from pathlib import Path

from monitor.exits import FAILURE, OK
from monitor.config import Config, ModelConfig, load_config
from monitor.demo.production import Production, create_tables
from monitor.demo.scenario import MODEL, Timeline, write_config
from monitor.demo.serving import Serving
from monitor.demo.sink import AlertSink
from monitor.demo.summary import Summary, build_summary
from monitor.logs import setup_logging


def say(line: str = "") -> None:
    print(line, flush=True)


class _RetrainProgress(logging.Handler):
    """The retrain worker logs its stages; the demo shows them as they happen."""

    def emit(self, record: logging.LogRecord) -> None:
        say(f"      retrain | {record.getMessage().removeprefix('retrain: ')}")


class DemoRun:
    def __init__(self, directory: Path, timeline: Timeline) -> None:
        self.dir, self.timeline = directory, timeline
        self.started = time.monotonic()

    def run(self) -> int:
        setup_logging("WARNING", "text")
        progress = logging.getLogger("driftd.retrain")
        progress.setLevel(logging.INFO)
        progress.addHandler(_RetrainProgress())
        progress.propagate = False
        say(f"driftd demo: everything lives in {self.dir}")
        with AlertSink(self.dir / "alerts.jsonl") as sink:
            config = load_config(write_config(self.dir, self.timeline, sink.url))
            model = config.model(MODEL)
            summary = self._run(config, model, sink)
        say()
        say(summary.render(self.dir))
        (self.dir / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2, default=str))
        return OK if summary.promoted else FAILURE

    def _run(self, config: Config, model: ModelConfig, sink: AlertSink) -> Summary:
        from monitor.daemon import Daemon
        from monitor.demo.baseline import register_baseline_model

        say("[1/4] training the baseline model and registering it as @champion ...")
        baseline = register_baseline_model(config, model)
        say(f"      {model.mlflow_name} version {baseline.version} is @champion "
            f"(holdout accuracy {baseline.score:.3f}, {baseline.reference_rows} reference rows)")
        tables = create_tables(model.source.resolved_url())
        serving = Serving(config, model)
        production = Production(tables, serving.current, rows_per_second=self.timeline.rows_per_second,
                                label_delay=timedelta(seconds=self.timeline.label_delay))
        daemon = Daemon(config)
        say(f"[2/4] production starts: {self.timeline.rows_per_second:.0f} predictions/s, labels after "
            f"{self.timeline.label_delay:.1f}s, a check every {self.timeline.window:.1f}s")
        production.start()
        daemon.start()
        say(f"      metrics: http://127.0.0.1:{daemon.port}/metrics")
        try:
            shift_at = self._watch(daemon, production)
        finally:
            daemon.stop()
            production.stop()
        say("[4/4] summary")
        return build_summary(config, model, daemon.store, shift_at, sink.alerts(), baseline)

    def _watch(self, daemon, production: Production) -> datetime | None:
        shown: set[str] = set()
        jobs_seen: dict[str, str] = {}
        shift_at: datetime | None = None
        finished_after: int | None = None
        verdicts = 0  # windows that reached a verdict (not waiting for rows)
        deadline = time.monotonic() + self.timeline.max_seconds
        while time.monotonic() < deadline:
            if production.error is not None:
                raise RuntimeError(f"the simulated production stopped: {production.error}")
            checks = [c for c in reversed(daemon.store.recent_checks(MODEL, 50)) if c.check_id not in shown]
            for check in checks:
                shown.add(check.check_id)
                say(_check_line(len(shown), check))
            verdicts += sum(c.status.value in ("ok", "drift") for c in checks)
            if shift_at is None and verdicts >= self.timeline.baseline_windows:
                shift_at = production.shift(1.0)
                say("[3/4] >>> covariate shift + concept change injected: poorer applicants, other regions, "
                    "and young/business borrowers now default far more")
            for job in daemon.store.retrain_jobs(MODEL):
                if jobs_seen.get(job.job_id) != job.status:
                    jobs_seen[job.job_id] = job.status
                    say(f"      retrain job {job.job_id[:8]}: {job.status}{f' ({job.outcome}: {job.reason})' if job.outcome else ''}")
                    if job.status in ("succeeded", "failed") and finished_after is None:
                        finished_after = verdicts
            # After the retrain, a few windows show the new champion's reference in use.
            if finished_after is not None and verdicts >= finished_after + 4:
                return shift_at
            time.sleep(0.2)
        say("      (time limit reached)")
        return shift_at


def _check_line(n: int, check) -> str:
    quality = ""
    if check.quality and "accuracy" in check.quality.metrics:
        quality = f"  accuracy {check.quality.metrics['accuracy']:.3f} on {check.quality.labelled_rows} labelled"
    status = check.status.value
    verdict = {"drift": "DRIFT", "ok": "ok", "insufficient_data": "waiting for rows", "error": "ERROR"}[status]
    share = f"{check.drifted_share:4.0%} drifted" if status in ("ok", "drift") else ""
    line = f"      window {n:3d}  {check.rows:5d} rows  {share:12s} {verdict:6s}{quality}"
    return line if status != "error" else f"{line}  {check.message}"

