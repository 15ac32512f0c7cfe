"""What a conformance check is, how one runs, and how its outcome reads in one line.

A :class:`Check` is one named promise a registered item makes (``model tinycnn: builds``). Its
``run`` returns on success, raises :class:`CheckFailed` with the reason, or
:class:`CheckSkipped` when it cannot be tried (e.g. a dataset that cannot generate a tree and
was given none). Any other exception is the plugin's bug and fails the check with the
exception's type, message and the plugin's own ``file:line``, so the user reads one line, not
a traceback. Checks of one item share what they build (a model is built once for all its
checks) through :func:`once`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, TypeVar

T = TypeVar("T")

Status = Literal["PASS", "FAIL", "SKIP"]

DEFAULT_IMAGE_SIZE = 96
"""Models are built and run at this size: small enough to check every model in seconds on a
CPU, large enough for Inception's stem."""


class CheckFailed(AssertionError):
    """A plugin broke a promise of its hook's contract; the message says which and how."""


class CheckSkipped(Exception):
    """A check that could not be tried; the message says why (never counts as a failure)."""


@dataclass(frozen=True)
class Check:
    """One promise of one registered item: ``kind`` (``"model"``, ``"loss"``, ...), the item's
    ``name``, what is checked (``check``) and the callable that checks it."""

    kind: str
    name: str
    check: str
    run: Callable[[], None]

    @property
    def title(self) -> str:
        return f"{self.kind} {self.name}: {self.check}"


@dataclass(frozen=True)
class Outcome:
    """The result of running one :class:`Check`."""

    check: Check
    status: Status
    reason: str = ""

    def line(self) -> str:
        """``PASS kind name: check`` or ``FAIL kind name: check: reason`` (SKIP likewise)."""
        text = f"{self.status} {self.check.title}"
        return f"{text}: {self.reason}" if self.reason else text


def run_check(check: Check) -> Outcome:
    """Run one check and turn whatever happens into an :class:`Outcome`, never raising."""
    from abawbench.plugins import describe_exception

    try:
        check.run()
    except CheckFailed as failed:
        return Outcome(check, "FAIL", _one_line(str(failed)))
    except CheckSkipped as skipped:
        return Outcome(check, "SKIP", _one_line(str(skipped)))
    except Exception as exc:  # the plugin's bug: name it in one line
        return Outcome(check, "FAIL", _one_line(describe_exception(exc)))
    return Outcome(check, "PASS")


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "(no message)"


def once(make: Callable[[], T], needed_by: str) -> Callable[[], T]:
    """``make`` called at most once; its result (or its failure) is shared by every caller.

    The first caller (the check that makes the thing, e.g. ``builds``) sees the failure as it
    happened; later callers are skipped with ``needed_by`` as the reason (e.g. "the model did
    not build"), so a model that fails to build fails one check, not five."""
    state: dict[str, object] = {}

    def get() -> T:
        if "value" in state:
            return state["value"]  # type: ignore[return-value]
        if "error" in state:
            raise CheckSkipped(needed_by)
        try:
            state["value"] = make()
        except BaseException:
            state["error"] = True
            raise
        return state["value"]  # type: ignore[return-value]

    return get


def expect(condition: bool, reason: str) -> None:
    """Fail the running check with ``reason`` unless ``condition`` holds."""
    if not condition:
        raise CheckFailed(reason)
