"""Whole entries claimed under a lock, so a sweep never runs one (entry, seed) twice.

Ranks of one ``torchrun`` job, and separate jobs (array jobs, two shells) that share a results
folder, walk the same list of entries; each takes an entry only by holding its claim, a lock
file beside the entry's result (``seed<N>.claim``). The operating system releases the lock
when its holder dies, so a killed job's entry is free for a rerun. Claim files stay (removing a
lock file races with a process about to take it); they hold nothing and tables ignore them.

After taking a claim, an entry whose result was written since this sweep began is left alone:
another worker finished it (completed or failed) while this one waited.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

CLAIM_SUFFIX = ".claim"


class Claims:
    """Claims on the results of one sweep, begun now."""

    def __init__(self) -> None:
        self.started = time.time()

    @contextmanager
    def claim(self, result_file: Path) -> Iterator[bool]:
        """True while this process holds ``result_file``'s entry and should run it; False when
        another worker holds it or finished it during this sweep."""
        result_file.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(result_file.with_suffix(CLAIM_SUFFIX)), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            yield False
            return
        try:
            yield not self.finished_meanwhile(result_file)
        finally:
            lock.release()

    def finished_meanwhile(self, result_file: Path) -> bool:
        """Whether ``result_file`` was written after this sweep began (by another worker)."""
        try:
            return result_file.stat().st_mtime >= self.started
        except FileNotFoundError:
            return False
