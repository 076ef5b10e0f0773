"""`driftd run`: every model checked on a bounded worker pool (monitor.service.scheduler), each run one
check followed by its consequences.

tick -> cycle (reference -> check -> state: result + watermark, one transaction) -> metrics
     -> consequences (policy -> alert state) -> alerts -> retrain hand-off
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from monitor import __version__
from monitor.check.run import Inputs
from monitor.core.clock import Clock, SystemClock
from monitor.core.config import Config, ModelConfig
from monitor.core.logs import log_context
from monitor.core.results import CheckResult, CheckStatus
from monitor.observe.metrics import Metrics
from monitor.service.consequences import retrain_status
from monitor.service.cycle import Cycle, Turn, failed, live_edge, open_inputs
from monitor.service.executors import open_executor
from monitor.service.reference import References
from monitor.sources.base import SourceError
from monitor.state.lease import Fenced, Leadership, SqliteLock, instance_name, lease_timing
from monitor.state.store import StateStore

if TYPE_CHECKING:
    from monitor.observe.server import MetricsServer
    from monitor.service.scheduler import Scheduler

log = logging.getLogger("driftd.daemon")

STOP_GRACE_SECONDS = 8.0  # SIGTERM must end the process within 10 s
MAX_CATCH_UP = 20  # windows per tick when behind; bounded so one model cannot hog a worker forever


class Daemon:
    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        from monitor.observe.alerts import Notifier
        from monitor.service.handoff import RetrainHandoff

        self.config = config
        self.clock = clock or SystemClock()
        self.metrics = Metrics(version=__version__)
        self.store = StateStore(config.state_url, clock=self.clock)
        self.store.migrate()
        self.references = References(config, clock=self.clock)
        self.notifier = Notifier(config.alerts.channels, self.metrics)
        self.executor = open_executor(config)  # computes checks and retrains; this process schedules and records
        # One place builds the hand-off: a deposed leader (`_follow`) replaces it with a fresh one.
        self._new_handoff = lambda: RetrainHandoff(config, self.store, self.metrics, clock=self.clock, executor=self.executor)
        self.handoff = self._new_handoff()
        self._inputs: dict[str, Inputs] = {}
        self.cycle = Cycle(self.store, self.references, self._inputs_for, self.clock, executor=self.executor)
        self._retrain_status: dict[str, str] = {}  # said once at start, and again when it changes
        self._null_timestamps: dict[str, int] = {}  # last count per model, to log a change once
        self._intervals: dict[str, float] = {}  # schedule interval per model, in seconds
        self._stop = threading.Event()
        self._active = 0
        self._active_lock = threading.Condition()
        self._scheduler: Scheduler | None = None
        self._server: MetricsServer | None = None
        self.instance = instance_name(config.state.instance)
        self.leadership: Leadership | None = None  # PostgreSQL: one replica leads (monitor.state.lease)
        self._sqlite_lock: SqliteLock | None = None
        self._role = threading.Lock()  # elected/deposed arrive on the lease thread, a fenced write on a check's

    # --- lifecycle ----------------------------------------------------------------------

    def start(self, schedule: bool = True) -> None:
        """Serve the HTTP endpoints and lead: recover, then (unless `schedule` is False: the caller
        then drives `tick` itself, as the demo does on its simulated clock) schedule the checks.
        On PostgreSQL a replica leads only while it holds the lease; until then it stands by."""
        self._server = self._start_server()
        for model in self.config.models:
            self._intervals[model.name] = _trigger(model)[1]
        if not schedule:  # the caller drives this process's checks: it is the one writer
            self._recover()
            self.metrics.leader(self.instance, True)
            return
        if not self.store.shared:
            if self.store.sqlite_file:
                self._sqlite_lock = SqliteLock(self.store.sqlite_file, self.store.url).acquire()
            log.info("state in SQLite: single instance (a second `driftd run` on it is refused); "
                     "share a PostgreSQL state_url to run standby replicas")
            self._lead(None)
            return
        lease = self.config.state.lease
        timing = lease_timing(lease.ttl, lease.renew_every, min(self._intervals.values(), default=60.0))
        self.leadership = Leadership(self.store.engine, self.instance, timing, self.clock, self._lead, self._follow)
        self.store.fence = self.leadership.fence  # refuses every write unless this replica holds the lease
        self.metrics.leader(self.instance, False)
        self.leadership.start()

    def _recover(self) -> None:
        for job in self.store.recover_interrupted_jobs():
            log.warning("retrain job %s of %s was interrupted (a restart or a change of leader); marked failed", job.job_id, job.model)
            self.metrics.retrain_finished(job.model, "failed", None)
        for model in self.config.models:  # a restart keeps a firing alert firing
            self.metrics.register_model(model.name, self._intervals[model.name], channels=model.alerts)
            self._publish_alert_state(model.name)

    def _lead(self, token: int | None) -> None:
        """Elected (or alone on SQLite): recover the jobs the last leader left, schedule every model."""
        from monitor.core.threads import pin_blas
        from monitor.service.scheduler import Scheduler

        with self._role:
            if self._stop.is_set():
                return
            self._recover()
            pin_blas()  # BLAS threads spin against the other checks: 0.38 -> 0.17 CPU-s per 5k-row check
            options = self.config.daemon
            workers = options.workers or default_workers()
            scheduler = self._scheduler = Scheduler(self.clock, self._tick_by_name, workers=workers, seed=options.seed,
                                                    jitter=options.jitter, stagger=options.stagger)
            for position, model in enumerate(self.config.models):
                trigger, interval = _trigger(model)
                scheduler.add(model.name, interval, _next_fire(model, trigger), position, len(self.config.models))
            scheduler.start()
            self.metrics.leader(self.instance, True)
        log.info("driftd %s watching %d models with %d workers; metrics on %s:%s", __version__, len(self.config.models),
                 workers, self.config.server.host, self._server.port if self._server else "-")

    def _follow(self, reason: str) -> None:
        """Deposed (monitor.state.lease logged why): schedule nothing more, end a running retrain, and stop
        exporting the models' series (the new leader's are the truth). Checks in flight meet the fence."""
        with self._role:
            self.metrics.leader(self.instance, False)
            if self._scheduler is not None:
                self._scheduler.stop()
                self._scheduler = None
            self.handoff.shutdown(wait=False)
            self.handoff = self._new_handoff()
            for model in self.config.models:
                self.metrics.forget_model(model.name)

    def stop(self) -> None:
        """Stop scheduling, let in-flight checks finish (bounded), close everything."""
        self._stop.set()
        with self._role:
            if self._scheduler is not None:
                self._scheduler.stop()
        with self._active_lock:
            self._active_lock.wait_for(lambda: self._active == 0, timeout=STOP_GRACE_SECONDS)
            clean = self._active == 0
        if self.leadership is not None:  # after the checks: a standby takes over at once, not mid-commit
            self.leadership.stop()
        if self._sqlite_lock is not None:
            self._sqlite_lock.release()
        self.handoff.shutdown(wait=False)
        self.executor.close()
        self.notifier.close(timeout=1.0)
        if self._server is not None:
            self._server.stop()
        if clean:
            for inputs in self._inputs.values():
                inputs.close()
            self.store.close()
        log.info("driftd stopped%s", "" if clean else " (a check was still running; its window will be redone)")

    def run_forever(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        self.start()
        self._stop.wait()
        self.stop()
        # Worker threads still inside a check or a retrain must not hold the process past
        # the 10 s budget; every write they could be in the middle of is transactional.
        logging.shutdown()
        os._exit(0)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the daemon serves no port until start()")
        return self._server.port

    # --- one tick -----------------------------------------------------------------------

    def _tick_by_name(self, name: str) -> None:
        self.tick(self.config.model(name))

    def tick(self, model: ModelConfig) -> CheckResult | None:
        if self._stop.is_set():
            return None
        with self._active_lock:
            self._active += 1
        try:
            with log_context(model=model.name):
                return self._catch_up(model)
        except Fenced as exc:  # a paused ex-leader: another replica checks this window
            log.error("%s", exc)
            if self.leadership is not None:
                self.leadership.lost(str(exc))
            return None
        except Exception:  # a bug in one tick must not kill the model's schedule
            log.exception("check of %s failed unexpectedly", model.name)
            self.metrics.publish_check(failed(model, "internal error; see the daemon log", self.clock.now()))
            return None
        finally:
            with self._active_lock:
                self._active -= 1
                self._active_lock.notify_all()

    def _catch_up(self, model: ModelConfig) -> CheckResult:
        """Check windows back to back while they end before the live edge: after an outage
        the backlog shrinks by up to MAX_CATCH_UP windows per tick instead of one."""
        for _ in range(MAX_CATCH_UP):
            result = self._tick(model)
            # A full window behind, not merely the jitter between a tick and the window's end.
            backlog = live_edge(model, result.started_at) - result.window_end
            behind = result.status in (CheckStatus.OK, CheckStatus.DRIFT) and backlog >= model.window.size
            if not behind or self._stop.is_set():
                break
        return result

    def _tick(self, model: ModelConfig) -> CheckResult:
        turn = self.cycle.run(model)
        result = turn.result
        if turn.champion is not None:
            self.metrics.champion(model.name, turn.champion.version)
        self._say_retrain_status(model, turn)
        self._publish(model, result, turn.champion)
        self._log(result)
        if turn.countable:
            self._act(model, turn)
        return result

    def _say_retrain_status(self, model: ModelConfig, turn: Turn) -> None:
        """Once at start (the first tick that knows the champion), and again when it changes."""
        if turn.loaded is None:
            return  # the registry could not be asked: nothing new is known
        status = retrain_status(model, turn.champion)
        if self._retrain_status.get(model.name) != status:
            self._retrain_status[model.name] = status
            log.info("retraining of %s: %s", model.name, status)

    def _inputs_for(self, model: ModelConfig) -> Inputs:
        if model.name not in self._inputs:
            self._inputs[model.name] = open_inputs(model)
        return self._inputs[model.name]

    def _publish(self, model: ModelConfig, result: CheckResult, champion) -> None:
        self.metrics.publish_check(result)
        self._input_problems(model, result)
        kind = result.details.get("source_error")
        if kind:
            self.metrics.source_error(model.name, kind)
        if "labels_error" in result.details:
            self.metrics.source_error(model.name, "labels")
        if result.quality and champion is not None and champion.validation_score is not None:
            from monitor.check.quality import quality_drop

            metric = champion.primary_metric
            if metric in result.quality.metrics:
                drop = quality_drop(champion.validation_score, result.quality.metrics[metric], metric)
                self.metrics.quality_drop(model.name, metric, drop, model.policy.quality_drop)

    def _input_problems(self, model: ModelConfig, result: CheckResult) -> None:
        """Late rows (counted when their window is recorded) and rows no window can hold."""
        from monitor.check.run import null_timestamps_note

        if result.status in (CheckStatus.OK, CheckStatus.DRIFT) and result.late_rows:
            self.metrics.late_rows(model.name, result.late_rows)
        if result.status is CheckStatus.ERROR and "source_error" in result.details:
            return  # the source could not be read: the count is unknown, not zero
        self.metrics.null_timestamp_rows(model.name, result.null_timestamps)
        if result.null_timestamps != self._null_timestamps.get(model.name, 0):
            if result.null_timestamps:
                log.warning("%s", null_timestamps_note(result.null_timestamps, model.name))
            else:
                log.info("no rows without a timestamp any more")
        self._null_timestamps[model.name] = result.null_timestamps

    def _log(self, result: CheckResult) -> None:
        if result.status in (CheckStatus.OK, CheckStatus.DRIFT):
            late = f" ({result.late_rows} of them late)" if result.late_rows else ""
            log.info("%s: %d rows%s, %.0f%% of features drifted%s", result.status.value, result.rows, late,
                     100 * result.drifted_share, f" ({', '.join(result.drifted_features)})" if result.drifted_features else "")
        elif result.status is CheckStatus.INSUFFICIENT_DATA:
            log.info("insufficient data: %s", result.message)
        else:
            log.error("check failed: %s", result.message)

    # --- consequences: policy, alerts, retrain --------------------------------------------

    def _act(self, model: ModelConfig, turn: Turn) -> None:
        from monitor.service.consequences import judge

        result, now = turn.result, turn.result.started_at
        interval = self._intervals.get(model.name) or _trigger(model)[1]
        verdict = judge(self.store, model, result, turn.champion, now=now,
                        labelled_rows=lambda: self._labelled_rows(model, now), alert_valid_for=timedelta(seconds=3 * interval))
        self._publish_alert_state(model.name)
        if verdict.alert is not None:
            self.notifier.notify(verdict.alert, model.alerts)
        if verdict.decision.retrain:
            self._retrain(model, result, turn.snapshot, "; ".join(verdict.decision.reasons))

    def _publish_alert_state(self, model: str) -> None:
        """driftd_alert_firing from the stored alert state (Prometheus' DriftdDatasetDrift follows it)."""
        from monitor.service.consequences import DRIFT_ALERT

        alert = self.store.alert_state(model, DRIFT_ALERT)
        self.metrics.alert_firing(model, DRIFT_ALERT, bool(alert and alert.firing))

    def _labelled_rows(self, model: ModelConfig, now: datetime) -> int | None:
        """Labelled rows a retrain starting now would train on; None when they cannot be counted."""
        from monitor.check.labels import attach_labels
        from monitor.sources.base import WindowQuery

        cols, inputs = model.columns, self._inputs_for(model)
        if not cols.target:
            return 0
        wanted = cols.to_read(features=False, target=inputs.labels is None)
        try:
            frame = inputs.source.read(WindowQuery(wanted, until=now, since=now - model.retrain.training_window))
            return int(attach_labels(frame, inputs.labels, cols)[cols.target].notna().sum())
        except SourceError as exc:
            log.warning("could not count labelled rows for the retrain gate: %s", exc)
            return None

    def _retrain(self, model: ModelConfig, result: CheckResult, snapshot, reason: str) -> None:
        from retrain import Trigger

        job = self.store.create_retrain_job(model.name, result.check_id, reason)
        if job is None:
            return
        report = self._save_report(model, result, snapshot)
        trigger = Trigger(result.check_id, result.window_start, result.window_end, result.drifted_share, reason, report)
        log.info("retrain %s queued: %s", job.job_id, reason)
        self.handoff.submit(job, model, trigger)

    def _save_report(self, model: ModelConfig, result: CheckResult, snapshot):
        if snapshot is None:
            return None
        from monitor.check.drift import save_report_html
        from monitor.core.paths import reports_dir

        try:
            return save_report_html(snapshot, reports_dir(self.config, model.name) / f"{result.check_id}.html")
        except Exception as exc:  # the report is a convenience; the retrain must not depend on it
            log.warning("could not render the drift report: %s", exc)
            return None

    # --- HTTP ---------------------------------------------------------------------------

    def _start_server(self) -> MetricsServer:
        from monitor.observe.server import MetricsServer

        return MetricsServer.from_config(self.metrics, self.config.server, self.readiness).start()

    def readiness(self) -> list[str]:
        from monitor.service.readiness import problems

        return problems(self.config, self.store)


def _trigger(model: ModelConfig):
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if model.schedule.every is not None:
        return IntervalTrigger(seconds=model.schedule.every.total_seconds(), timezone=timezone.utc), model.schedule.every.total_seconds()
    cron = CronTrigger.from_crontab(model.schedule.cron, timezone=timezone.utc)
    first = cron.get_next_fire_time(None, datetime.now(timezone.utc))
    second = cron.get_next_fire_time(first, first + timedelta(seconds=1))
    return cron, (second - first).total_seconds()


def _next_fire(model: ModelConfig, trigger) -> Callable[[datetime], datetime]:
    """The schedule as a function from one fire time to the next (the daemon's `Scheduler`
    runs the jobs; APScheduler's cron trigger only computes cron times)."""
    if model.schedule.every is not None:
        every = model.schedule.every
        return lambda previous: previous + every
    return lambda previous: trigger.get_next_fire_time(previous, previous + timedelta(microseconds=1))


def default_workers() -> int:
    """Checks are CPU-bound (numpy, pandas) with some waiting on sources: two per core."""
    from retrain.train import available_cores

    return max(2, 2 * available_cores())
