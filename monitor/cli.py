"""`driftd` command line. Exit codes: 0 ok, 1 drift found (check), 2 usage/config error, 3 runtime failure."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from monitor import __version__
from monitor.core.clock import utc
from monitor.core.config import ConfigError, load_config
from monitor.core.exits import FAILURE, OK, USAGE, Failure


def _timestamp(text: str) -> datetime:
    """An ISO-8601 time (UTC when it has no zone), or a duration back from now (`7d`, `12h`)."""
    from monitor.core.config import parse_duration

    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        try:
            return datetime.now(timezone.utc) - parse_duration(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is neither an ISO-8601 time (e.g. 2026-11-27T10:00:00Z) nor a duration back from now (e.g. 7d, 12h)"
            ) from None
    return utc(value)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="driftd", description="Drift monitoring that closes the loop to a retrained, recompressed champion.")
    parser.add_argument("--version", action="version", version=f"driftd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, *, model: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("-c", "--config", required=True, type=Path, help="driftd YAML configuration")
        if model:
            p.add_argument("--model", required=True, help="model name from the configuration")
        return p

    command("validate", "check the configuration and exit (2 on errors)")
    command("run", "run the daemon: scheduled checks, metrics, alerts, retrains")
    check = command("check", "check one window now and print the verdict (exit 1 on drift)", model=True)
    check.add_argument("--json", action="store_true", help="print the result as JSON")
    check.add_argument("--since", type=_timestamp, help="window start (default: until - window.size)")
    check.add_argument("--until", type=_timestamp, help="window end (default: now)")
    check.add_argument("--reference", type=Path, help="reference file (Parquet/CSV/JSONL) instead of the champion's")
    backfill = command("backfill", "check past windows back to back as the daemon would (exit 1 if any drifted)", model=True)
    backfill.add_argument("--since", required=True, type=_timestamp, help="where to start (ISO-8601 time, or a duration back from now: 30d)")
    backfill.add_argument("--until", type=_timestamp, help="where to stop (default: now - window.lateness)")
    backfill.add_argument("--json", action="store_true", help="one JSON line per window: the `check --json` fields and the policy decision")
    backfill.add_argument("--dry-run", action="store_true", help="write nothing: run on a throwaway state store, from --since")
    backfill.add_argument("--alerts", action="store_true", help="send the alerts the policy fires (off by default: the windows are history)")
    command("retrain", "retrain, recompress and gate the model now", model=True)
    command("status", "models, champion versions and last checks")
    health = command("health", "probe the running daemon's /healthz (or /readyz) as configured, TLS included; exit 1 if not healthy")
    health.add_argument("--ready", action="store_true", help="probe /readyz instead of /healthz")
    health.add_argument("--timeout", type=float, default=4.0, help="seconds to wait for the answer (default 4)")
    command("skip-window", "record the model's next window as skipped and move past it (for rows that cannot be checked)", model=True)
    promote = command("promote", "make a registered version the champion", model=True)
    promote.add_argument("--version", required=True, dest="model_version")
    command("rollback", "give the champion alias back to the previous champion", model=True)
    adopt = command("adopt", "put an existing MLflow model under driftd's care", model=True)
    origin = adopt.add_mutually_exclusive_group()
    origin.add_argument("--run", dest="run_id", help="MLflow run id holding a sklearn model at 'model'")
    origin.add_argument("--model-uri", help="MLflow model URI (runs:/…, models:/…)")
    adopt.epilog = "Without --run or --model-uri: the model `driftd init --model-file/--model-uri` imported last."
    adopt.add_argument("--reference", required=True, type=Path, help="the data the model was trained on")
    init = sub.add_parser("init", help="write a configuration inferred from your logs (and reference, and model)",
                          description="Sample the prediction logs, infer each column's role (reasons printed), write a "
                                      "commented configuration, validate it, and print the commands to run next.")
    logs = init.add_mutually_exclusive_group(required=True)
    logs.add_argument("--logs", help="glob of the prediction logs (Parquet, CSV, JSON lines), e.g. 'logs/*.parquet'")
    logs.add_argument("--sql-url", help="SQLAlchemy URL of the prediction-log database (a password in it is kept out of the file)")
    init.add_argument("--table", help="with --sql-url: the predictions table")
    init.add_argument("--query", help="with --sql-url: a SELECT over the predictions instead of a table")
    init.add_argument("--schema", help="with --sql-url: the database schema of the tables")
    labels = init.add_mutually_exclusive_group()
    labels.add_argument("--labels", help="glob of the delayed labels (id and label columns; a timestamp is optional)")
    labels.add_argument("--labels-table", help="with --sql-url: the labels table")
    init.add_argument("--reference", type=Path, help="the data the model was trained on (Parquet, CSV, JSON lines)")
    model_origin = init.add_mutually_exclusive_group()
    model_origin.add_argument("--model-file", type=Path, help="a pickled/joblib scikit-learn model to import for `driftd adopt`")
    model_origin.add_argument("--model-uri", help="an MLflow scikit-learn model URI (runs:/…, models:/…) to import for `driftd adopt`")
    init.add_argument("--mlflow-uri", help="MLflow tracking URI for the configuration (default: sqlite:///mlflow.db beside it)")
    init.add_argument("--name", help="the model's name in driftd and the MLflow registry (default: from the model file)")
    init.add_argument("-o", "--output", type=Path, default=Path("driftd.yaml"), help="configuration to write (default driftd.yaml)")
    init.add_argument("--force", action="store_true", help="overwrite the output file")
    for role in ("timestamp", "id", "prediction", "probability", "target"):
        init.add_argument(f"--{role}", metavar="COLUMN", help=f"the {role} column, when the inferred one is wrong")
    init.add_argument("--task", choices=["binary_classification", "multiclass_classification", "regression"])
    init.add_argument("--sample-rows", type=int, default=10_000, help="rows of the logs to look at (default 10000, the newest)")
    demo = sub.add_parser("demo", help="the embedded end-to-end demo", description="Train, monitor, drift, retrain and promote, all on this machine.")
    demo.add_argument("--dir", type=Path, default=Path(".demo"), help="where the demo keeps its stores (default .demo)")
    demo.add_argument("--speed", type=float, default=1.0,
                      help="how fast the simulated clock may run against the wall clock (default 1; the story is the same at any speed)")
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"configuration error in {getattr(args, 'config', '')}:\n{_indent(str(exc))}", file=sys.stderr)
        return USAGE
    except Failure as exc:
        print(f"driftd: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return FAILURE
    except BrokenPipeError:  # stdout's reader left (`| head`) in output not printed through say()
        from monitor.service.output import silence_stdout

        silence_stdout()
        return FAILURE
    except Exception as exc:  # a bug or an unforeseen error: still exit 3, never 1 ("drift")
        import traceback

        traceback.print_exc()
        print(f"driftd: unexpected {type(exc).__name__}: {exc} (please report this with the traceback above)", file=sys.stderr)
        return FAILURE


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from monitor.demo import run_demo

        return run_demo(args.dir, speed=args.speed)
    if args.command == "init":
        from monitor.service.onboard import request_of, run_init

        return run_init(request_of(args))
    config = load_config(args.config)
    if args.command == "validate":
        from monitor.service.output import say

        say(f"OK: {args.config} ({len(config.models)} models: {', '.join(m.name for m in config.models) or 'none'})")
        return OK
    from monitor.service import commands

    handler = getattr(commands, f"cmd_{args.command.replace('-', '_')}")
    return handler(config, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
