"""The daemon's scheduler: staggered first runs, seeded jitter, a queue ordered by staleness,
a bounded pool. Time is a SimulatedClock throughout: no outcome depends on machine speed."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from monitor.core.clock import SimulatedClock
from monitor.core.config import Config
from monitor.service.scheduler import Queue, Scheduler

T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)


def every(seconds: float):
    return lambda previous: previous + timedelta(seconds=seconds)


def queue(n: int, interval: float = 60.0, **options) -> Queue:
    q = Queue(**options)
    for i in range(n):
        q.add(f"m{i}", interval, every(interval), T0, i, n)
    return q


def test_first_runs_are_staggered_over_half_an_interval_in_configuration_order():
    q = queue(4, interval=60.0)
    assert [(j.due - T0).total_seconds() for j in q.jobs.values()] == [0.0, 7.5, 15.0, 22.5]
    assert [j.key for j in q.ready(T0 + timedelta(seconds=16))] == ["m0", "m1", "m2"]  # never run: in due order


def test_jitter_is_seeded_and_bounded_and_does_not_accumulate():
    def dues(seed: int) -> list[float]:
        q, out = queue(1, interval=100.0, seed=seed, jitter=0.1), []
        job, now = q.jobs["m0"], T0
        for _ in range(50):
            q.take(job, now)
            q.done(job, now)
            out.append((job.due - T0).total_seconds())
            now = job.due
        return out

    first = dues(seed=7)
    assert first == dues(seed=7) and first != dues(seed=8)
    for k, due in enumerate(first, start=1):  # run k is due at k intervals plus at most 10 s of jitter
        assert 100.0 * k <= due < 100.0 * k + 10.0


def test_no_model_starves_when_checks_take_longer_than_the_pool_can_keep_up_with():
    """30 models every 60 s, one worker, each check 2.5 s: 75 s of work per 60 s interval.
    The queue cannot keep every model fresh, but it shares the shortfall: every model keeps
    being checked, none falls more than a bounded number of intervals behind."""
    clock = SimulatedClock(T0)
    q = queue(30, interval=60.0, seed=1)
    runs = {key: 0 for key in q.jobs}
    worst = 0.0
    while clock.now() < T0 + timedelta(hours=1):
        ready = q.ready(clock.now())
        if not ready:
            clock.advance(q.next_due() - clock.now())
            continue
        job = ready[0]
        q.take(job, clock.now())
        clock.advance(timedelta(seconds=2.5))
        q.done(job, clock.now())
        runs[job.key] += 1
        worst = max(worst, max(q.staleness(clock.now(), T0).values()))
    assert min(runs.values()) >= 40 and max(runs.values()) - min(runs.values()) <= 2, runs
    assert worst < 2.0  # intervals since a model's last check


def test_a_run_that_overran_its_interval_is_followed_by_one_run_not_a_burst():
    q = queue(1, interval=10.0, jitter=0.0)
    job = q.jobs["m0"]
    q.take(job, T0)
    late = T0 + timedelta(seconds=35)  # three fire times (10, 20, 30 s) missed while it ran
    q.done(job, late)
    assert [j.key for j in q.ready(late)] == ["m0"]  # one catch-up run now ...
    q.take(job, late)
    q.done(job, late)
    assert q.ready(late) == [] and job.due == T0 + timedelta(seconds=40)  # ... then back on the grid


def test_bad_options_fail_loudly():
    with pytest.raises(ValueError, match="shares of the interval"):
        Queue(jitter=2.0)
    q = queue(1)
    with pytest.raises(ValueError, match="scheduled twice"):
        q.add("m0", 60.0, every(60.0), T0, 0, 1)
    with pytest.raises(ValueError, match="positive interval"):
        q.add("m9", 0.0, every(0.0), T0, 0, 1)


def test_the_pool_runs_at_most_workers_checks_at_once_and_every_due_model_gets_its_turn():
    clock = SimulatedClock(T0)
    gate, lock = threading.Event(), threading.Lock()
    running, peak, ran = 0, 0, []

    def run(key: str) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        gate.wait(timeout=30)
        with lock:
            running -= 1
            ran.append(key)

    scheduler = Scheduler(clock, run, workers=2, stagger=0.0, jitter=0.0)
    for i in range(6):
        scheduler.add(f"m{i}", 60.0, every(60.0), i, 6)
    scheduler.start()
    try:
        _wait(lambda: scheduler.busy == 2)
        assert scheduler.dispatch() == 0  # both workers busy: the other four wait in the queue
        gate.set()
        _wait(lambda: len(ran) == 6 and scheduler.busy == 0)
        assert peak == 2 and sorted(ran) == [f"m{i}" for i in range(6)]
        assert scheduler.dispatch() == 0  # nothing is due again before the next interval
        clock.advance(timedelta(seconds=60))
        scheduler.wake()
        _wait(lambda: len(ran) == 12)
    finally:
        scheduler.stop()
        gate.set()


def test_daemon_options_come_from_the_config():
    config = Config.model_validate({"daemon": {"workers": 3, "jitter": 0.0, "seed": 5}})
    assert (config.daemon.workers, config.daemon.jitter, config.daemon.stagger, config.daemon.seed) == (3, 0.0, 0.5, 5)
    assert Config().daemon.workers is None  # two per available core, decided at start


def _wait(condition, timeout: float = 30.0) -> None:
    """Poll for readiness: the worker threads run at the machine's speed, the schedule does not."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.01)


def test_a_thousand_models_are_all_first_checked_within_one_interval_and_none_falls_two_behind():
    """1,000 models every 300 s on 4 workers; a first check (reference prepared and calibrated)
    takes 1 s of a worker, later ones 0.4 s: 250 s of first checks, queued in the order they
    come due. Every model gets its first check within the first interval and stays fresh."""
    clock, workers, interval = SimulatedClock(T0), 4, 300.0
    q = queue(1000, interval=interval, seed=3)
    running: list[tuple[datetime, str]] = []  # (finishes at, job)
    first_done: dict[str, float] = {}
    worst = 0.0
    while clock.now() < T0 + timedelta(seconds=3 * interval):
        for job in q.ready(clock.now())[: workers - len(running)]:
            q.take(job, clock.now())
            running.append((clock.now() + timedelta(seconds=1.0 if job.runs == 1 else 0.4), job.key))
        running.sort()
        waits = [running[0][0]] if running else []
        if len(running) < workers and q.next_due() is not None:
            waits.append(max(q.next_due(), clock.now() + timedelta(microseconds=1)))
        clock.advance(min(waits) - clock.now())
        while running and running[0][0] <= clock.now():
            _, key = running.pop(0)
            job = q.jobs[key]
            worst = max(worst, ((clock.now() - (job.last_done or T0)).total_seconds()) / interval)  # gap before this result
            q.done(job, clock.now())
            first_done.setdefault(key, (clock.now() - T0).total_seconds())
    worst = max(worst, *q.staleness(clock.now(), T0).values())  # and since each model's last result
    assert len(first_done) == 1000 and max(first_done.values()) < interval
    assert worst < 2.0 and min(j.runs for j in q.jobs.values()) >= 3
