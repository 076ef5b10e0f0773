"""Printing for the command line: a reader that goes away (`driftd check --json | head`) ends
the output quietly instead of with a BrokenPipeError traceback."""

from __future__ import annotations

import os
import sys


def say(text: str = "") -> None:
    """Print one line (flushed); if stdout's reader has gone, drop the rest of the output."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        silence_stdout()


def silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush cannot raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
