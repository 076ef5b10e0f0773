"""`driftd init`: from a sample of the user's logs (and a reference file, and the model) to a
validated, commented configuration and the commands to run next.

    sample the logs (files or SQL) -> infer the roles (monitor.service.roles, reasons printed)
      -> write the config (monitor.service.scaffold) -> validate it -> import the model (optional)
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from monitor.core.exits import USAGE, Failure
from monitor.core.redact import mask, url_secrets
from monitor.service.output import say

SAMPLE_ROWS = 10_000
SOURCE_URL_VAR = "DRIFTD_SOURCE_URL"
WINDOW_SIZES = (timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1), timedelta(hours=6), timedelta(days=1), timedelta(days=7))


class InitError(Failure):
    """Init cannot go on; the message says what to give it (exit 3, or 2 for a missing option)."""


def _usage(message: str) -> InitError:
    return InitError(message, code=USAGE)


@dataclass(frozen=True)
class Request:
    """`driftd init`'s arguments."""

    output: Path
    logs: str | None = None
    sql_url: str | None = None
    table: str | None = None
    query: str | None = None
    schema: str | None = None
    labels: str | None = None
    labels_table: str | None = None
    reference: Path | None = None
    model_file: Path | None = None
    model_uri: str | None = None
    mlflow_uri: str | None = None
    name: str | None = None
    force: bool = False
    overrides: dict[str, str] | None = None
    sample_rows: int = SAMPLE_ROWS


def request_of(args: Any) -> Request:
    overrides = {role: getattr(args, role) for role in ("timestamp", "id", "prediction", "probability", "target", "task")
                 if getattr(args, role, None)}
    return Request(output=args.output, logs=args.logs, sql_url=args.sql_url, table=args.table, query=args.query,
                   schema=args.schema, labels=args.labels, labels_table=args.labels_table, reference=args.reference,
                   model_file=args.model_file, model_uri=args.model_uri, mlflow_uri=args.mlflow_uri, name=args.name,
                   force=args.force, overrides=overrides, sample_rows=args.sample_rows)


def run_init(request: Request) -> int:
    from monitor.service.roles import Evidence, RolesError, infer_roles

    if request.output.exists() and not request.force:
        raise _usage(f"{request.output} exists; pass --force to overwrite it, or --output another file")
    if (request.logs is None) == (request.sql_url is None):
        raise _usage("say where the prediction logs are: --logs 'GLOB' (Parquet, CSV, JSON lines) or --sql-url URL --table NAME")
    sample, where = _sample_logs(request)
    reference = _read_reference(request.reference) if request.reference else None
    if sample.empty and reference is not None:
        say(f"{where} holds no rows yet: inferring the roles from the reference file")
        sample, where = reference.tail(request.sample_rows), str(request.reference)
    labels = _sample_labels(request)
    estimator, inputs = _load_model(request)
    evidence = Evidence(reference=reference, labels=labels, overrides=request.overrides or {},
                        model_columns=(inputs.required or inputs.names) if inputs else None,
                        model_categorical=inputs.categorical if inputs else (), model_task=inputs.task if inputs else None)
    try:
        roles = infer_roles(sample, evidence)
    except RolesError as exc:
        raise _usage(str(exc)) from None
    _say_roles(roles, where, len(sample))
    window, why_window = _window(sample, roles.timestamp)
    if why_window:
        say(f"  window.size {window['size']}: {why_window}")
    if inputs is not None:
        _say_model_fit(inputs, roles)
    name = _model_name(request)
    text = _render(request, roles, name, window, why_window, where, len(sample))
    request.output.parent.mkdir(parents=True, exist_ok=True)
    request.output.write_text(text, encoding="utf-8")
    config = _validated(request)
    say(f"wrote {request.output} (model {name!r}) and validated it: OK")
    imported = _import(request, config, name) if estimator is not None else None
    _say_next(request, name, roles, sample, imported)
    return 0


# --- reading what the user has -----------------------------------------------------------------


def _sample_logs(request: Request) -> tuple[pd.DataFrame, str]:
    if request.logs is not None:
        return _sample_files(request.logs, request.sample_rows), request.logs
    return _sample_sql(request.sql_url or "", request.table, request.query, request.schema, request.sample_rows), _shown(request)


def _sample_files(pattern: str, rows: int) -> pd.DataFrame:
    """The last `rows` rows of the files matching `pattern` (files in name order: the newest last)."""
    files = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    if not files:
        root = Path(pattern).parent
        if not root.exists():
            raise InitError(f"no files match {pattern}: directory {root} does not exist")
        return pd.DataFrame()
    frames: list[pd.DataFrame] = []
    have = 0
    for path in reversed(files):
        frame = _read_file(Path(path), rows - have)
        frames.insert(0, frame)
        have += len(frame)
        if have >= rows:
            break
    return pd.concat(frames, ignore_index=True).tail(rows).reset_index(drop=True)


def _read_file(path: Path, rows: int) -> pd.DataFrame:
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(path)
            groups: list[int] = []
            have = 0
            for index in reversed(range(parquet.num_row_groups)):  # the file's newest rows, without reading it all
                groups.insert(0, index)
                have += parquet.metadata.row_group(index).num_rows
                if have >= rows:
                    break
            return parquet.read_row_groups(groups).to_pandas().tail(rows)
        if name.endswith((".csv", ".csv.gz")):
            return pd.read_csv(path).tail(rows)
        if name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".json")):
            return pd.read_json(path, lines=True).tail(rows)
    except Exception as exc:  # pyarrow/pandas raise many types for a broken file
        raise InitError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    raise InitError(f"cannot tell the format of {path} from its extension (use .parquet, .csv or .jsonl)")


def _sample_sql(url: str, table: str | None, query: str | None, schema: str | None, rows: int) -> pd.DataFrame:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    if (table is None) == (query is None):
        raise _usage("with --sql-url, give exactly one of --table NAME or --query 'SELECT ...'")
    try:
        parsed = make_url(url)
    except Exception:
        raise _usage("--sql-url is not a SQLAlchemy URL (e.g. postgresql+psycopg://user@host:5432/db)") from None
    shown = mask(parsed.render_as_string(hide_password=False), url_secrets(url))
    engine = sa.create_engine(parsed)
    try:
        source = sa.table(table, schema=schema) if table else sa.text((query or "").rstrip().rstrip(";")).columns().subquery("src")
        with engine.connect() as conn:
            return pd.read_sql(sa.select(sa.literal_column("*")).select_from(source).limit(rows), conn)
    except Exception as exc:
        detail = mask(" ".join(str(getattr(exc, "orig", None) or exc).split()), (*url_secrets(url), parsed.password))
        raise InitError(f"cannot read a sample from {shown}: {detail}") from None
    finally:
        engine.dispose()


def _sample_labels(request: Request) -> pd.DataFrame | None:
    if request.labels:
        frame = _sample_files(request.labels, request.sample_rows)
        if frame.empty:
            raise InitError(f"no labels in {request.labels}: the files are missing or empty")
        return frame
    if request.labels_table:
        if request.sql_url is None:
            raise _usage("--labels-table needs --sql-url (the labels live in the same database)")
        return _sample_sql(request.sql_url, request.labels_table, None, request.schema, request.sample_rows)
    return None


def _read_reference(path: Path) -> pd.DataFrame:
    from monitor.service.reference import ReferenceError, read_table

    try:
        return read_table(path)
    except ReferenceError as exc:
        raise InitError(str(exc)) from None


def _load_model(request: Request) -> tuple[Any, Any]:
    if request.model_file is None and request.model_uri is None:
        return None, None
    from retrain.onboarding import ModelInputError, load_estimator, model_inputs

    if request.model_uri is not None:
        import mlflow

        mlflow.set_tracking_uri(request.mlflow_uri or _default_tracking(request))
    try:
        estimator = load_estimator(path=request.model_file, uri=request.model_uri)
    except ModelInputError as exc:
        raise InitError(str(exc)) from None
    return estimator, model_inputs(estimator)


# --- inferring -----------------------------------------------------------------------------------


def _window(sample: pd.DataFrame, timestamp: str) -> tuple[dict[str, str], str]:
    """The smallest window size that should hold 2 x min_rows at the sample's rate."""
    from monitor.core.config import Window
    from monitor.service.scaffold import _duration

    times = pd.to_datetime(sample[timestamp], utc=True, errors="coerce", format="ISO8601").dropna()
    span = (times.max() - times.min()).total_seconds() if len(times) > 1 else 0.0
    if span <= 0:
        return {}, ""
    per_second = (len(times) - 1) / span
    wanted = 2 * Window().min_rows
    size = next((s for s in WINDOW_SIZES if per_second * s.total_seconds() >= wanted), WINDOW_SIZES[-1])
    expected = per_second * size.total_seconds()
    why = (f"the sample holds ~{per_second * 3600:,.0f} rows an hour, so a {_duration(size)} window holds ~{expected:,.0f} rows "
           f"(at least 2 x window.min_rows = {wanted} wanted)")
    if expected < wanted:
        why += "; the logs are sparse: consider a lower window.min_rows"
    return {"size": _duration(size)}, why


def _model_name(request: Request) -> str:
    raw = request.name or (request.model_file.stem if request.model_file else None) or request.table or "model"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).strip("-._") or "model"
    if request.name and name != request.name:
        raise _usage(f"--name {request.name!r}: model names use letters, digits, '_', '.' and '-' (e.g. {name!r})")
    return name


# --- writing -------------------------------------------------------------------------------------


def _render(request: Request, roles, name: str, window: dict, why_window: str, where: str, rows: int) -> str:
    from monitor.service.scaffold import Scaffold, render

    base = request.output.resolve().parent
    source = _source(request, base, table=request.table, query=request.query, files=request.logs)
    labels = None
    if request.labels:
        labels = _source(request, base, files=request.labels)
    elif request.labels_table:
        labels = _source(request, base, table=request.labels_table)
    header = (f"driftd configuration written by `driftd init` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC\n"
              f"from {rows} sampled rows of {where}. Every key of the configuration reference (README.md) is here,\n"
              "at driftd's default unless inferred; `driftd validate -c` checks it. Relative paths are relative to this file.")
    scaffold = Scaffold(name, source, labels, _relative(request.reference, base) if request.reference else None,
                        window, why_window, header, tracking_uri=request.mlflow_uri or "sqlite:///mlflow.db")
    return render(scaffold, roles)


def _source(request: Request, base: Path, *, table: str | None = None, query: str | None = None, files: str | None = None) -> dict:
    if files is not None:
        return {"type": "files", "path": _relative(Path(files), base)}
    url = request.sql_url or ""
    section: dict[str, Any] = {"type": "sql", "url": f"${{{SOURCE_URL_VAR}}}" if _has_password(url) else _sqlite_relative(url, base)}
    section.update({"table": table} if table else {"query": query})
    if request.schema:
        section["schema"] = request.schema
    return section


def _relative(path: Path, base: Path) -> str:
    """`path` (as the user typed it, relative to the working directory) relative to the config's folder."""
    return os.path.relpath(os.path.abspath(path), base)


def _sqlite_relative(url: str, base: Path) -> str:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return "sqlite:///" + _relative(Path(url.removeprefix("sqlite:///")), base)
    return url


def _has_password(url: str) -> bool:
    from sqlalchemy.engine import make_url

    try:
        return bool(make_url(url).password)
    except Exception:
        return False


def _validated(request: Request):
    from monitor.core.config import ConfigError, load_config

    env = dict(os.environ)
    if request.sql_url and _has_password(request.sql_url):
        env[SOURCE_URL_VAR] = request.sql_url
    try:
        return load_config(request.output, env=env)
    except ConfigError as exc:  # a bug in init, or an odd input it did not foresee: say so, keep the file
        raise InitError(f"the configuration written to {request.output} does not validate (please report this):\n{exc}") from None


def _default_tracking(request: Request) -> str:
    return f"sqlite:///{request.output.resolve().parent / 'mlflow.db'}"


def _import(request: Request, config, name: str) -> str:
    from retrain.onboarding import import_model

    model = config.model(name)
    try:
        uri = import_model(config, model, path=request.model_file, uri=request.model_uri)
    except Exception as exc:
        from retrain.tracking import describe

        raise InitError(f"the configuration is written, but importing the model into MLflow failed: {describe(exc)}") from None
    say(f"imported {request.model_file or request.model_uri} into MLflow ({config.mlflow.tracking_uri}) for `driftd adopt`")
    return uri


# --- saying ------------------------------------------------------------------------------------


def _say_roles(roles, where: str, rows: int) -> None:
    say(f"columns of {where} ({rows} sampled rows):")
    width = max(len(str(c.column)) for c in roles.choices)
    for choice in roles.choices:
        say(f"  {choice.role:12s} {str(choice.column).ljust(width)}  {choice.reason}")
    say(f"  task         {roles.task} ({roles.task_reason})")


def _say_model_fit(inputs, roles) -> None:
    from retrain.onboarding import explain

    problems, notes = explain(inputs, roles.numerical, roles.categorical)
    for line in problems + notes:
        say(f"  model: {line}")


def _say_next(request: Request, name: str, roles, sample: pd.DataFrame, imported: str | None) -> None:
    config = str(request.output)
    times = pd.to_datetime(sample[roles.timestamp], utc=True, errors="coerce", format="ISO8601").dropna()
    say("next:")
    if request.sql_url and _has_password(request.sql_url):
        say(f"  export {SOURCE_URL_VAR}='...'      # the database URL with its password; it stays out of {config}")
    say(f"  driftd validate -c {config}")
    if len(times):
        # --since is exclusive: a second before the first sampled row, so that row is in.
        since = (times.min().floor("s") - pd.Timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        until = times.max().ceil("s").strftime("%Y-%m-%dT%H:%M:%SZ")
        say(f"  driftd backfill -c {config} --model {name} --since {since} --until {until}"
              "   # check the history; before starting the daemon")
    reference = f" --reference {request.reference}" if request.reference else " --reference TRAINING_DATA.parquet"
    if imported:
        say(f"  driftd adopt -c {config} --model {name}{reference}   # makes the imported model @champion: retraining on")
    else:
        say(f"  driftd adopt -c {config} --model {name} --model-uri URI{reference}   # optional: without a champion "
              "driftd monitors only")
    say(f"  driftd run -c {config}")


def _shown(request: Request) -> str:
    from sqlalchemy.engine import make_url

    try:
        text = request.sql_url or ""
        url = mask(make_url(text).render_as_string(hide_password=False), url_secrets(text))
    except Exception:
        url = "the database"
    return f"{request.table or 'the query'} at {url}"
