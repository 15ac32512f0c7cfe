"""Run a plugin's checks and print one line per check: ``PASS kind name: check``,
``FAIL kind name: check: reason`` or ``SKIP kind name: check: reason``."""

from __future__ import annotations

import sys
from typing import TextIO

from abawbench.conformance.core import Check, Outcome, run_check


def run_all(checks: list[Check], out: TextIO | None = None) -> list[Outcome]:
    """Run every check in order, printing each outcome's line (to ``out``, default stdout) as
    soon as it is known."""
    out = out or sys.stdout
    outcomes = []
    for check in checks:
        outcome = run_check(check)
        print(outcome.line(), file=out, flush=True)
        outcomes.append(outcome)
    return outcomes


def summary(outcomes: list[Outcome]) -> str:
    counts = {status: sum(o.status == status for o in outcomes) for status in ("PASS", "FAIL", "SKIP")}
    return f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped"
