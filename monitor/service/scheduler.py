"""The daemon's scheduler: a bounded pool of workers fed by a queue ordered by staleness.

One thread per model (the old design) started every job at the same instant and let 200
models' checks contend for 2 cores: a 0.2 s check took 10 s, throughput fell, and a model
could go 150 s without a check. Here:

- at most `workers` checks run at once; the rest wait in the queue;
- first runs are staggered over the first `stagger` share of each model's interval, in
  configuration order, so start-up is not a thundering herd (references are prepared by
  each model's first check, so they are staggered too);
- every later run is delayed by a seeded jitter of up to `jitter` × interval, so models with
  the same cadence drift apart instead of firing together forever;
- when more models are due than workers are free, the stalest runs first (never checked, then
  the longest since its last check, in its own intervals): under overload the models take
  turns, so the shortfall is shared and none starves;
- a model is never queued twice: a run that overran its interval is followed by one run,
  not a burst (each check catches up every finished window anyway).

All time is read from the `Clock`, so a `SimulatedClock` drives it deterministically: the
decisions live in `Queue` (no threads), `Scheduler` only waits and dispatches.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitor.core.clock import Clock

log = logging.getLogger("driftd.scheduler")

STAGGER = 0.5  # share of the interval the first runs are spread over
JITTER = 0.05  # share of the interval a run may be delayed by
MAX_WAIT = 1.0  # seconds between looks at the clock, so a simulated clock that moves is noticed

NextFire = Callable[[datetime], datetime]  # a due time -> the next one


@dataclass
class Job:
    key: str
    interval: float  # seconds, for ordering and jitter
    next_fire: NextFire
    base_due: datetime  # on the schedule, before jitter
    due: datetime  # when it may run
    running: bool = False
    runs: int = 0
    last_started: datetime | None = None
    last_done: datetime | None = None


@dataclass
class Queue:
    """Which job runs next, and when each runs again. Not thread-safe: `Scheduler` locks."""

    seed: int = 0
    jitter: float = JITTER
    stagger: float = STAGGER
    jobs: dict[str, Job] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.jitter <= 1 or not 0 <= self.stagger <= 1:
            raise ValueError(f"jitter and stagger are shares of the interval within 0..1, got {self.jitter}, {self.stagger}")
        self._random = random.Random(self.seed)
        self.delays: deque[float] = deque(maxlen=10_000)  # seconds from due to started, latest runs

    def add(self, key: str, interval: float, next_fire: NextFire, start: datetime, position: int, count: int) -> Job:
        """Job `position` of `count` first runs `position / count` of the stagger span after `start`."""
        if key in self.jobs:
            raise ValueError(f"job {key!r} is scheduled twice")
        if interval <= 0:
            raise ValueError(f"job {key!r} needs a positive interval, got {interval}")
        first = start + timedelta(seconds=interval * self.stagger * position / max(count, 1))
        job = self.jobs[key] = Job(key, interval, next_fire, first, first)
        return job

    def ready(self, now: datetime) -> list[Job]:
        """Due jobs not running, the stalest first: never run (in due order), then the longest
        since its last start, in its own intervals."""
        due = [j for j in self.jobs.values() if not j.running and j.due <= now]
        return sorted(due, key=lambda j: (j.last_started is not None, -self._stale(j, now), j.due, j.key))

    @staticmethod
    def _stale(job: Job, now: datetime) -> float:
        return (now - job.last_started).total_seconds() / job.interval if job.last_started else 0.0

    def take(self, job: Job, now: datetime) -> None:
        """`job` starts now: schedule its next run (the next fire time after now, jittered)."""
        job.running, job.runs, job.last_started = True, job.runs + 1, now
        self.delays.append((now - job.due).total_seconds())
        base = job.next_fire(job.base_due)
        while base <= now:  # overran: one run next, not one per missed fire time
            base = job.next_fire(base)
        job.base_due = base
        job.due = base + timedelta(seconds=self._random.uniform(0, self.jitter * job.interval))

    def done(self, job: Job, now: datetime) -> None:
        job.running, job.last_done = False, now

    def next_due(self) -> datetime | None:
        waiting = [j.due for j in self.jobs.values() if not j.running]
        return min(waiting) if waiting else None

    def staleness(self, now: datetime, since: datetime) -> dict[str, float]:
        """Intervals since each job last finished (or since `since`, when it never ran)."""
        return {j.key: (now - (j.last_done or since)).total_seconds() / j.interval for j in self.jobs.values()}


class Scheduler:
    """Runs `run(key)` for due jobs on at most `workers` threads."""

    def __init__(self, clock: Clock, run: Callable[[str], object], *, workers: int, seed: int = 0,
                 jitter: float = JITTER, stagger: float = STAGGER) -> None:
        if workers < 1:
            raise ValueError(f"the scheduler needs at least one worker, got {workers}")
        self.clock, self.workers, self._run = clock, workers, run
        self.queue = Queue(seed=seed, jitter=jitter, stagger=stagger)
        self._lock = threading.Condition()
        self._busy = 0
        self._stopping = False
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="driftd-check")
        self._thread: threading.Thread | None = None
        self.started_at = clock.now()

    def add(self, key: str, interval: float, next_fire: NextFire, position: int, count: int) -> None:
        with self._lock:
            self.queue.add(key, interval, next_fire, self.started_at, position, count)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="driftd-scheduler", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look at the clock now (a simulated clock moved)."""
        with self._lock:
            self._lock.notify_all()

    def stop(self) -> None:
        """Dispatch nothing more; running jobs finish on their own (the daemon bounds the wait)."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def busy(self) -> int:
        with self._lock:
            return self._busy

    def dispatch(self) -> int:
        """Start as many ready jobs as there are free workers; how many were started."""
        with self._lock:
            if self._stopping:
                return 0
            now = self.clock.now()
            started = 0
            for job in self.queue.ready(now)[: self.workers - self._busy]:
                self.queue.take(job, now)
                self._busy += 1
                started += 1
                self._pool.submit(self._work, job)
            return started

    def _work(self, job: Job) -> None:
        try:
            self._run(job.key)
        except Exception:  # the daemon's tick catches its own; this keeps the worker count right regardless
            log.exception("scheduled job %s failed", job.key)
        finally:
            with self._lock:
                self.queue.done(job, self.clock.now())
                self._busy -= 1
                self._lock.notify_all()

    def _loop(self) -> None:
        while True:
            self.dispatch()
            with self._lock:
                if self._stopping:
                    return
                wait = MAX_WAIT
                due = self.queue.next_due()
                if due is not None and self._busy < self.workers:
                    wait = min(wait, max(0.0, (due - self.clock.now()).total_seconds()))
                if wait > 0:
                    self._lock.wait(wait)
