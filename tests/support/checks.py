"""Comparing check results across executors."""

from __future__ import annotations

from monitor.core.results import CheckResult


def comparable(result: CheckResult) -> dict:
    """What a check found, without what differs by run or executor (its id, timing, where it ran)."""
    found = result.to_dict()
    for key in ("check_id", "duration_seconds"):
        found.pop(key, None)
    found["details"] = {k: v for k, v in found.get("details", {}).items() if k != "executor"}
    if found.get("multivariate"):
        found["multivariate"] = {k: v for k, v in found["multivariate"].items() if k != "seconds"}
    return found
