"""The work behind each `driftd` sub-command (argument parsing lives in cli.py)."""

from __future__ import annotations

import argparse
import uuid
from collections import Counter
from contextlib import ExitStack
from datetime import datetime, timezone

from monitor.core.config import Config
from monitor.core.exits import DRIFT, FAILURE, OK, UNHEALTHY, Failure
from monitor.core.logs import log_context, setup_logging
from monitor.core.results import CheckResult, CheckStatus
from monitor.core.statuses import RetrainOutcome
from monitor.service.output import say
from monitor.service.render import check_report, table


def cmd_check(config: Config, args: argparse.Namespace) -> int:
    from monitor.check.inputs import opened_inputs
    from monitor.check.run import WindowSpec, run_check
    from monitor.service.reference import ReferenceError, References
    from monitor.sources.base import SourceError

    setup_logging(config.logging.level, config.logging.format)
    model = config.model(args.model)
    with ExitStack() as stack:
        try:
            with log_context(model=model.name):
                references = References(config, override=args.reference)
                loaded = references.get(model)
            inputs = stack.enter_context(opened_inputs(model))
        except (ReferenceError, SourceError) as exc:
            raise Failure(str(exc)) from None
        until = args.until or datetime.now(timezone.utc) - model.window.lateness
        result = run_check(inputs, loaded.prepared, WindowSpec(since=args.since, until=until),
                           attribution=references.attribution(model, loaded), signals=loaded.signals).result
    say(result.to_json() if args.json else check_report(result))
    return {CheckStatus.DRIFT: DRIFT, CheckStatus.ERROR: FAILURE}.get(result.status, OK)


def cmd_backfill(config: Config, args: argparse.Namespace) -> int:
    import json
    import sys

    from monitor.service.backfill import BackfillError, Progress, Window, backfill, window_line
    from monitor.service.cycle import live_edge
    from monitor.state.store import StateError

    setup_logging(config.logging.level, config.logging.format)
    model = config.model(args.model)
    until = args.until or live_edge(model, datetime.now(timezone.utc))
    progress = Progress(until)
    shown: list[Window] = []
    note = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else say  # stdout holds only JSON lines

    def show(window: Window) -> None:
        shown.append(window)
        progress.clear()
        say(json.dumps(window.to_dict(dry_run=args.dry_run), default=str) if args.json else window_line(window))
        progress.update(window.turn.result.window_start, window.turn.result.window_end, len(shown))

    try:
        with log_context(model=model.name):
            summary = backfill(config, model, since=args.since, until=until, dry_run=args.dry_run, alerts=args.alerts,
                               on_window=show, say=note)
    except (BackfillError, StateError) as exc:
        raise Failure(str(exc)) from None
    finally:
        progress.clear()
    counts = Counter(w.turn.result.status.value for w in summary.windows)
    tally = ", ".join(f"{n} {status}" for status, n in counts.items()) or "no windows"
    where = "nothing recorded (--dry-run)" if args.dry_run else "recorded in the state store"
    note(f"{model.name}: {len(summary.windows)} windows ({tally}); {where}")
    if summary.failed is not None:
        raise Failure(f"stopped at a window that cannot be checked: {summary.failed.turn.result.message} "
                      "(the daemon would hold there too; fix the input, or move past it with `driftd skip-window`)")
    return DRIFT if summary.drifted else OK


def cmd_run(config: Config, args: argparse.Namespace) -> int:
    from monitor.observe.server import ServerError
    from monitor.service.daemon import Daemon
    from monitor.state.store import StateError

    setup_logging(config.logging.level, config.logging.format)
    try:
        daemon = Daemon(config)
        return daemon.run_forever()
    except (StateError, ServerError) as exc:
        raise Failure(str(exc)) from None


def cmd_retrain(config: Config, args: argparse.Namespace) -> int:
    from monitor.service.consequences import NOT_CONFIGURED
    from monitor.service.jobs import run_job
    from monitor.service.reference import registry_exists
    from retrain import Trigger, run_retrain
    from retrain.registry import champion

    setup_logging(config.logging.level, config.logging.format)
    model = config.model(args.model)
    if not registry_exists(config) or _registry_call(champion, config, model) is None:
        raise Failure(f"cannot retrain {model.name!r}: {NOT_CONFIGURED}")  # not a failed retrain: none is recorded
    store = _store(config)
    job = store.create_retrain_job(model.name, None, "requested with `driftd retrain`")
    if job is None:
        raise Failure(f"a retrain of {model.name!r} is already queued or running (see `driftd status`)")

    def progress(line: str) -> None:
        say(f"  {line}")

    outcome = run_job(store, job, lambda: run_retrain(config, model, Trigger(None, None, None, None, "manual"), progress=progress),
                      lambda exc: f"interrupted: {type(exc).__name__}")
    say(f"{outcome.outcome.upper()}: {outcome.reason}")
    if outcome.challenger_score is not None:
        say(f"  {outcome.metric}: champion {_num(outcome.champion_score)}  challenger {_num(outcome.challenger_score)}")
    for gate in outcome.gates:
        say(f"  gate {gate.name} {gate.verdict}: {gate.detail}")
    if outcome.compressed_size:
        say(f"  size {outcome.original_size} -> {outcome.compressed_size} bytes ({outcome.variant}); "
              f"single-row p50 {_num(outcome.original_p50_ms)} -> {_num(outcome.compressed_p50_ms)} ms")
    return FAILURE if outcome.outcome == RetrainOutcome.FAILED else OK


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    from monitor.service.consequences import retrain_status
    from monitor.service.reference import registry_exists
    from retrain.registry import champion

    store = _store(config)
    rows = []
    for model in config.models:
        try:
            current = champion(config, model) if registry_exists(config) else None
            version = current.version if current else "none"
            retraining = retrain_status(model, current)
        except Exception as exc:  # status must still show the state store when MLflow is down
            version = f"unavailable ({type(exc).__name__})"
            retraining = "unknown (registry unavailable)"
        last = next(iter(store.recent_checks(model.name, 1)), None)
        alert = store.alert_state(model.name, "DriftdDatasetDrift")
        jobs = store.retrain_jobs(model.name)
        rows.append((
            model.name, version,
            last.started_at if last else None, last.status.value if last else None,
            f"{last.drifted_share:.0%}" if last else None,
            "firing" if alert and alert.firing else "-",
            f"{jobs[0].status} ({jobs[0].outcome or '-'})" if jobs else None,
            retraining,
        ))
    say(table(("model", "champion", "last check", "status", "drifted", "alert", "last retrain", "retraining"), rows))
    return OK


def cmd_health(config: Config, args: argparse.Namespace) -> int:
    """For Docker's HEALTHCHECK and Kubernetes' exec probes: they follow the config (port, TLS)
    instead of hard-coding http://…:9108, and need no credentials (the probes are open)."""
    import ssl
    import urllib.error
    import urllib.request

    server = config.server
    host = "127.0.0.1" if server.host in ("0.0.0.0", "", "::") else server.host
    host = f"[{host}]" if ":" in host else host
    scheme = "https" if server.tls else "http"
    url = f"{scheme}://{host}:{server.port}/{'readyz' if args.ready else 'healthz'}"
    # The probe runs beside the daemon: it asks whether it answers, not who it is, so the
    # certificate (issued for the service's name, not 127.0.0.1) is not verified.
    context = ssl._create_unverified_context() if server.tls else None  # noqa: S323
    try:
        with urllib.request.urlopen(url, timeout=args.timeout, context=context) as answer:
            say(f"{url}: {answer.status} {answer.read().decode(errors='replace').strip()}")
            return OK
    except urllib.error.HTTPError as exc:
        say(f"{url}: {exc.code} {exc.read().decode(errors='replace').strip()}")
    except (urllib.error.URLError, OSError) as exc:
        say(f"{url}: no answer ({getattr(exc, 'reason', exc)})")
    return UNHEALTHY


def cmd_skip_window(config: Config, args: argparse.Namespace) -> int:
    """A window whose rows cannot be checked holds its model; an operator moves past it, on the record."""
    from monitor.check.inputs import opened_inputs
    from monitor.check.run import WindowSpec, read_window, seen_of
    from monitor.sources.base import SourceError

    model = config.model(args.model)
    store = _store(config)
    now = datetime.now(timezone.utc)
    spec = WindowSpec(after=store.watermark(model.name), until=now - model.window.lateness, audit=store.audit(model.name))
    try:
        with opened_inputs(model, labels=False) as inputs:
            window = read_window(inputs, spec, now, validate=False)  # skipped rows need not be valid
    except SourceError as exc:
        raise Failure(f"{exc} (a file that cannot be read must be repaired or moved; skipping needs readable rows)") from None
    mark = window.watermark
    if mark is None:
        say(f"nothing to skip: no rows of {model.name} after its watermark")
        return OK
    late = f" ({window.late_rows} of them late)" if window.late_rows else ""
    message = f"skipped with `driftd skip-window`: {window.rows} rows{late} not checked"
    result = CheckResult(check_id=uuid.uuid4().hex, model=model.name, status=CheckStatus.ERROR, started_at=now,
                         window_start=window.start, window_end=window.end, rows=window.rows, watermark=mark,
                         message=message, late_rows=window.late_rows)
    # The skipped rows' keys are recorded too: they must not come back as late rows.
    store.record_check(result, seen_of(window, spec, model))
    say(f"{model.name}: {message}; the next window starts after {mark.timestamp.isoformat()} (id {mark.id})")
    return OK


def cmd_promote(config: Config, args: argparse.Namespace) -> int:
    from retrain.registry import promote

    model = config.model(args.model)
    _registry_call(promote, config, model, args.model_version)
    say(f"{model.mlflow_name}@champion -> version {args.model_version}")
    return OK


def cmd_rollback(config: Config, args: argparse.Namespace) -> int:
    from retrain.registry import rollback

    model = config.model(args.model)
    version = _registry_call(rollback, config, model)
    say(f"{model.mlflow_name}@champion -> version {version} (rolled back)")
    return OK


def cmd_adopt(config: Config, args: argparse.Namespace) -> int:
    from retrain.baseline import adopt

    model = config.model(args.model)
    version = _registry_call(adopt, config, model, run_id=args.run_id, model_uri=args.model_uri, reference=args.reference)
    say(f"adopted: {model.mlflow_name} version {version} is now @champion with reference {args.reference}")
    say(f"retraining of {model.name}: enabled" if model.retrain.enabled else
        f"retraining of {model.name}: disabled (retrain.enabled: false)")
    return OK


def _registry_call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # MLflow raises many types; the user needs the message, not a traceback
        raise Failure(f"{fn.__name__} failed: {exc}") from None


def _store(config: Config):
    from monitor.state.store import StateError, StateStore

    try:
        store = StateStore(config.state_url)
        store.migrate()
        return store
    except StateError as exc:
        raise Failure(str(exc)) from None


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"

