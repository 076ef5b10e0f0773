"""Who may write the state store: one leader among `driftd run` replicas on PostgreSQL, and one
daemon per SQLite file.

PostgreSQL: a lease row (`leader_lease`) names the holder, when its lease expires, and a fencing
token that grows by one on every change of holder. The leader renews every `renew_every`; a
standby takes the lease once it has expired (by the daemon's clock), with the next token. Every
write transaction of the leader first reads the row `FOR SHARE` and goes on only while the token
is still its own (`Leadership.fence`): a leader that was paused (GC, SIGSTOP, a frozen VM) past its
lease and resumed has its commit refused, because the lock orders it after the takeover. Safety
rests on the token alone; the clocks only decide how soon a standby takes over (keep the skew
between hosts well under the ttl).

SQLite: one writer per file, enforced with an exclusive `flock` on `<file>.lock` that the kernel
releases when the process dies however it dies.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from monitor.core.clock import Clock
from monitor.state.schema import leader_lease
from monitor.state.store import StateError

log = logging.getLogger("driftd.lease")

LEASE_NAME = "driftd"  # one lease per state database: every replica schedules every model
MIN_TTL = timedelta(seconds=2)
MAX_TTL = timedelta(seconds=60)
# A standby's attempt waits this long for a row a paused leader's open transaction still locks.
_LOCK_TIMEOUT_MS = 1000


class Fenced(StateError):
    """A write was refused: this replica's fencing token is no longer the lease's."""


@dataclass(frozen=True)
class LeaseTiming:
    ttl: timedelta
    renew_every: timedelta


@dataclass(frozen=True)
class Holder:
    instance: str
    token: int
    expires_at: datetime


def lease_timing(ttl: timedelta | None, renew_every: timedelta | None, shortest_interval_s: float) -> LeaseTiming:
    """Defaults from the shortest check interval: a dead leader's lease runs out after half an
    interval and a standby looks every quarter ttl, so it takes over within about 0.6 intervals
    and its first check is due at once — inside the two intervals promised."""
    if ttl is None:
        ttl = min(max(timedelta(seconds=shortest_interval_s / 2), MIN_TTL), MAX_TTL)
    if renew_every is None:
        renew_every = ttl / 4
    if renew_every >= ttl:
        raise ValueError(f"state.lease.renew_every ({renew_every}) must be shorter than state.lease.ttl ({ttl})")
    return LeaseTiming(ttl, renew_every)


def instance_name(configured: str | None) -> str:
    """`state.instance`, else $DRIFTD_INSTANCE, else the host name (a pod's name on Kubernetes)."""
    return configured or os.environ.get("DRIFTD_INSTANCE") or socket.gethostname()


class Leadership:
    """This replica's side of the lease. `step()` renews or tries to acquire once; `start()` runs it
    every `renew_every` on a thread. `on_elected(token)` / `on_deposed(reason)` run on that thread."""

    def __init__(self, engine: Engine, instance: str, timing: LeaseTiming, clock: Clock,
                 on_elected: Callable[[int], None], on_deposed: Callable[[str], None]) -> None:
        self.instance, self.timing = instance, timing
        self._engine, self._clock = engine, clock
        self._on_elected, self._on_deposed = on_elected, on_deposed
        self._token: int | None = None
        self._held: int | None = None  # the last token held, for the refusal's message
        self._expires: datetime | None = None
        self._seen: Holder | None = None  # the other holder last logged, to log a change once
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def token(self) -> int | None:
        """The fencing token while this replica leads, else None."""
        with self._lock:
            return self._token

    @property
    def leading(self) -> bool:
        return self.token is not None

    # --- the fence -----------------------------------------------------------------------

    def fence(self, conn: Connection) -> int:
        """First statement of every leader's write transaction: the token, or Fenced.

        FOR SHARE blocks a takeover until this transaction ends, and a takeover that committed
        first is seen here. A process paused inside the transaction would hold that lock; the
        idle-in-transaction timeout lets PostgreSQL end its session so a standby can proceed."""
        with self._lock:
            mine, held = self._token, self._held
        ms = int(self.timing.ttl.total_seconds() * 1000)
        conn.exec_driver_sql(f"SET LOCAL idle_in_transaction_session_timeout = {ms}")
        row = conn.execute(sa.select(leader_lease.c.holder, leader_lease.c.token)
                           .where(leader_lease.c.name == LEASE_NAME).with_for_update(read=True)).first()
        if mine is None or row is None or row.token != mine:
            now = f"held by {row.holder} with token {row.token}" if row is not None else "not held"
            raise Fenced(f"commit refused by the fencing token: {self.instance} wrote with token {held}, "
                         f"but the lease is now {now}; this replica is no longer the leader and steps down")
        return mine

    # --- one round -----------------------------------------------------------------------

    def step(self) -> None:
        """Renew (leader) or try to take the lease (standby); fire the callback on a change."""
        try:
            if self.leading:
                self._renew()
            else:
                self._acquire()
        except SQLAlchemyError as exc:
            detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            with self._lock:
                expired = self._expires is not None and self._clock.now() >= self._expires
            if self.leading and expired:
                self._lose(f"could not renew the lease before it expired ({detail})")
            else:
                log.warning("lease round failed, retrying in %s: %s", self.timing.renew_every, detail)

    def _renew(self) -> None:
        now = self._clock.now()
        with self._engine.begin() as conn:
            renewed = conn.execute(
                sa.update(leader_lease)
                .where(leader_lease.c.name == LEASE_NAME, leader_lease.c.token == self.token)
                .values(renewed_at=now, expires_at=now + self.timing.ttl)
                .returning(leader_lease.c.token)).first() is not None
            holder = None if renewed else self._holder(conn)
        if renewed:
            with self._lock:
                self._expires = now + self.timing.ttl
        else:
            self._lose(f"the lease was taken over by {holder.instance} (token {holder.token})" if holder else "the lease row is gone")

    def _acquire(self) -> None:
        now = self._clock.now()
        with self._engine.begin() as conn:
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {_LOCK_TIMEOUT_MS}")
            row = conn.execute(sa.select(leader_lease).where(leader_lease.c.name == LEASE_NAME).with_for_update()).first()
            values = {"holder": self.instance, "acquired_at": now, "renewed_at": now, "expires_at": now + self.timing.ttl}
            if row is None:  # the first replica ever; two racing here: one insert wins, the other stands by
                token = 1
                insert = postgresql.insert(leader_lease).values(name=LEASE_NAME, token=token, **values)
                if conn.execute(insert.on_conflict_do_nothing().returning(leader_lease.c.token)).first() is None:
                    return
            elif row.expires_at <= now:
                token = row.token + 1
                conn.execute(sa.update(leader_lease).where(leader_lease.c.name == LEASE_NAME).values(token=token, **values))
            else:
                self._standing_by(Holder(row.holder, row.token, row.expires_at))
                return
        with self._lock:
            self._token, self._held, self._expires, self._seen = token, token, now + self.timing.ttl, None
        log.warning("%s leads with fencing token %d (lease ttl %s, renewed every %s)", self.instance, token,
                    self.timing.ttl, self.timing.renew_every)
        try:
            self._on_elected(token)
        except Fenced as exc:  # taken over again before the first write
            self._lose(str(exc))

    def _standing_by(self, holder: Holder) -> None:
        if self._seen is None or (self._seen.instance, self._seen.token) != (holder.instance, holder.token):
            log.info("%s stands by: %s leads with token %d (lease until %s)", self.instance, holder.instance,
                     holder.token, holder.expires_at.isoformat())
        self._seen = holder

    def _holder(self, conn: Connection) -> Holder | None:
        row = conn.execute(sa.select(leader_lease).where(leader_lease.c.name == LEASE_NAME)).first()
        return None if row is None else Holder(row.holder, row.token, row.expires_at)

    def lost(self, reason: str) -> None:
        """A write was fenced (or the daemon otherwise knows it no longer leads): step down now."""
        if self.leading:
            self._lose(reason)

    def _lose(self, reason: str) -> None:
        with self._lock:
            if self._token is None:
                return
            token, self._token, self._expires = self._token, None, None
        log.error("%s steps down (token %d): %s", self.instance, token, reason)
        self._on_deposed(reason)

    # --- the thread ----------------------------------------------------------------------

    def start(self) -> None:
        self.step()  # the first round before start() returns: a lone replica leads at once
        self._thread = threading.Thread(target=self._loop, name="driftd-lease", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.timing.renew_every.total_seconds()):
            try:
                self.step()
            except Exception:  # a bug in a callback must not end leadership rounds
                log.exception("lease round failed unexpectedly")

    def stop(self) -> None:
        """Stop the rounds and, when leading, let the lease expire now so a standby takes over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        token = self.token
        with self._lock:
            self._token = None
        if token is None:
            return
        try:
            with self._engine.begin() as conn:
                conn.execute(sa.update(leader_lease).where(leader_lease.c.name == LEASE_NAME, leader_lease.c.token == token)
                             .values(expires_at=self._clock.now()))
            log.info("%s released the lease (token %d)", self.instance, token)
        except SQLAlchemyError as exc:
            log.warning("could not release the lease; a standby takes over when it expires: %s", exc)


class SqliteLock:
    """One `driftd run` per SQLite state file: an exclusive flock on `<file>.lock`, held until
    `release()` or the process's death."""

    def __init__(self, database: str, masked_url: str) -> None:
        self.path = Path(f"{database}.lock")
        self._file: IO[str] | None = None
        self._url = masked_url

    def acquire(self) -> SqliteLock:
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            other = handle.read().strip() or "unknown"
            handle.close()
            raise StateError(
                f"state database {self._url} is in use by another `driftd run` (pid {other}, lock {self.path}): "
                "SQLite state is single-instance. Stop the other daemon, or share a PostgreSQL state_url "
                "between replicas (one leads, the others stand by)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the flock
            self._file = None

