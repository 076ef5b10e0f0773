"""The demo's run: baseline, production, the real daemon, live progress, and the summary."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from monitor.core.config import Config, ModelConfig, SqlSource, load_config
from monitor.core.exits import FAILURE, OK
from monitor.core.logs import setup_logging
from monitor.demo.production import Production, create_tables
from monitor.demo.scenario import MODEL, Timeline, write_config
from monitor.demo.serving import Serving
from monitor.demo.sink import AlertSink
from monitor.demo.summary import Summary, build_summary
from monitor.service.output import say


class _RetrainProgress(logging.Handler):
    """The retrain worker logs its stages; the demo shows them as they happen."""

    def emit(self, record: logging.LogRecord) -> None:
        say(f"      retrain | {record.getMessage().removeprefix('retrain: ')}")


class DemoRun:
    def __init__(self, directory: Path, timeline: Timeline, speed: float = 1.0) -> None:
        self.dir, self.timeline, self.speed = directory, timeline, speed

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
        from monitor.core.clock import SimulatedClock
        from monitor.demo.baseline import register_baseline_model
        from monitor.service.daemon import Daemon

        say("[1/4] training the baseline model and registering it as @champion ...")
        baseline = register_baseline_model(config, model)
        say(f"      {model.mlflow_name} version {baseline.version} is @champion "
            f"(holdout accuracy {baseline.score:.3f}, {baseline.reference_rows} reference rows)")
        assert isinstance(model.source, SqlSource)  # the demo's scenario writes its logs to SQL
        tables = create_tables(model.source.resolved_url())
        serving = Serving(config, model)
        serving.refresh()
        # The demo's own clock: production logs on it, the daemon checks on it, and it moves
        # only when the demo says so — after a window is logged, and never during a retrain.
        clock = SimulatedClock(datetime.now(timezone.utc))
        production = Production(tables, serving.current, rows_per_second=self.timeline.rows_per_second,
                                label_delay=timedelta(seconds=self.timeline.label_delay), start=clock.now())
        daemon = Daemon(config, clock=clock)
        say(f"[2/4] production starts: {self.timeline.rows_per_second:.0f} predictions/s, labels after "
            f"{self.timeline.label_delay:.1f}s, a check every {self.timeline.window:.1f}s")
        daemon.start(schedule=False)  # the demo drives the daemon's ticks on its clock
        say(f"      metrics: http://127.0.0.1:{daemon.port}/metrics")
        try:
            shift_at = self._play(daemon, production, serving, clock, model)
        finally:
            daemon.stop()
        say("[4/4] summary")
        return build_summary(config, model, daemon.store, shift_at, sink.alerts(), baseline)

    def _play(self, daemon, production: Production, serving: Serving, clock, model: ModelConfig) -> datetime | None:
        window = timedelta(seconds=self.timeline.window)
        shown: set[str] = set()
        jobs_seen: dict[str, str] = {}
        shift_at: datetime | None = None
        finished_after: int | None = None
        verdicts = 0  # windows that reached a verdict (not waiting for rows)
        for _ in range(self.timeline.max_windows):
            paced = time.monotonic() + window.total_seconds() / self.speed
            production.advance(clock.now() + window)
            clock.advance(window)
            daemon.tick(model)
            self._wait_for_retrain(daemon, jobs_seen)
            serving.refresh()  # the alias moves only in a retrain, which has finished by now
            checks = [c for c in reversed(daemon.store.recent_checks(MODEL, 50)) if c.check_id not in shown]
            for check in checks:
                shown.add(check.check_id)
                say(_check_line(len(shown), check))
            verdicts += sum(c.status.value in ("ok", "drift") for c in checks)
            if finished_after is None and any(job.status in ("succeeded", "failed") for job in daemon.store.retrain_jobs(MODEL)):
                finished_after = verdicts
            # After the retrain, a few windows show the new champion's reference in use.
            if finished_after is not None and verdicts >= finished_after + 4:
                return shift_at
            if shift_at is None and verdicts >= self.timeline.baseline_windows:
                shift_at = production.shift(1.0)
                say("[3/4] >>> covariate shift + concept change injected: poorer applicants, other regions, "
                    "and young/business borrowers now default far more")
            time.sleep(max(paced - time.monotonic(), 0.0))  # at most `speed` times real time; never hurried
        say("      (window limit reached)")
        return shift_at

    def _wait_for_retrain(self, daemon, jobs_seen: dict[str, str]) -> None:
        """Time stands still while a retrain runs, however long the machine takes for it."""
        while True:
            jobs = daemon.store.retrain_jobs(MODEL)
            for job in jobs:
                if jobs_seen.get(job.job_id) != job.status:
                    jobs_seen[job.job_id] = job.status
                    say(f"      retrain job {job.job_id[:8]}: {job.status}{f' ({job.outcome}: {job.reason})' if job.outcome else ''}")
            if not any(job.active for job in jobs) and daemon.handoff.idle():
                return
            time.sleep(0.2)


def _check_line(n: int, check) -> str:
    quality = ""
    if check.quality and "accuracy" in check.quality.metrics:
        quality = f"  accuracy {check.quality.metrics['accuracy']:.3f} on {check.quality.labelled_rows} labelled"
    status = check.status.value
    verdict = {"drift": "DRIFT", "ok": "ok", "insufficient_data": "waiting for rows", "error": "ERROR"}[status]
    share = f"{check.drifted_share:4.0%} drifted" if status in ("ok", "drift") else ""
    line = f"      window {n:3d}  {check.rows:5d} rows  {share:12s} {verdict:6s}{quality}"
    return line if status != "error" else f"{line}  {check.message}"

