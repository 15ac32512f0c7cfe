"""The files a board reads besides result files: reported numbers and leaderboard JSON documents.

Both are written by hand or by another version of abawbench, so each is checked on reading and
a problem is a :class:`~abawbench.errors.DataFormatError` naming the file (and the line, for
JSON that does not parse). Reported numbers live in a file, not in code, so a user adds a
paper's number without touching abawbench; the board marks them "reported" and never ranks them
(:func:`abawbench.boards.build.reference_section`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from abawbench.errors import DataFormatError

REFERENCE_FIELDS = frozenset({"track", "entry", "split", "score", "source", "data"})


def read_json(path: Path, expected: type, what: str) -> Any:
    """The JSON value in ``path``, which must be an instance of ``expected`` (described as ``what``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}: line {exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(data, expected):
        raise DataFormatError(f"{path}: expected {what}")
    return data


def load_references(path: Path | None) -> list[dict[str, Any]]:
    """Reported rows from a JSON file (a list of objects); a missing file means none, so an
    installed copy without the repository's reference file still renders its boards."""
    if path is None or not path.exists():
        return []
    rows = read_json(path, list, "a JSON list of reference rows")
    for position, row in enumerate(rows):
        missing = REFERENCE_FIELDS - set(row) if isinstance(row, dict) else REFERENCE_FIELDS
        if missing:
            raise DataFormatError(f"{path}: reference row {position} lacks {sorted(missing)}")
    return rows
