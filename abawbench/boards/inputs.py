"""The files a board reads besides result files: reported numbers and leaderboard JSON documents.

Both are written by hand or by another version of abawbench, so each is checked on reading and
a problem is a :class:`~abawbench.errors.DataFormatError` naming the file (and the line, for
JSON that does not parse). Reported numbers live in a file, not in code, so a user adds a
paper's number without touching abawbench; the board marks them "reported" and never ranks them
(:func:`abawbench.boards.build.reference_section`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Callable

from abawbench.boards.build import Leaderboard, Row, Section
from abawbench.boards.formats import LEADERBOARD_JSON_FORMAT
from abawbench.errors import DataFormatError

REFERENCE_FIELDS = frozenset({"track", "entry", "split", "score", "source", "data"})
"""Fields every reported row has; ``url`` (where it was published) is optional: an arXiv
source (``arXiv 2207.09508``) links to its abstract page without one."""

_ARXIV = re.compile(r"arXiv[: ]+(\d{4}\.\d{4,5})", re.IGNORECASE)


def read_json(path: Path, expected: type, what: str, parse_float: Callable[[str], Any] | None = None) -> Any:
    """The JSON value in ``path``, which must be an instance of ``expected`` (described as ``what``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"), parse_float=parse_float)
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
    # Scores are read as the text they were written as: a paper's "0.30" keeps its two digits.
    rows = read_json(path, list, "a JSON list of reference rows", parse_float=str)
    for position, row in enumerate(rows):
        missing = REFERENCE_FIELDS - set(row) if isinstance(row, dict) else REFERENCE_FIELDS
        if missing:
            raise DataFormatError(f"{path}: reference row {position} lacks {sorted(missing)}")
        published = str(row["score"])
        try:
            row["score"] = float(published)
        except ValueError:
            raise DataFormatError(f"{path}: reference row {position}: score {published!r} is not a number") from None
        row["published"] = published
        row.setdefault("url", source_url(str(row["source"])))
    return rows


def source_url(source: str) -> str:
    """The page of an arXiv source (``arXiv 2207.09508`` -> its abstract), else ``""``."""
    found = _ARXIV.search(source)
    return f"https://arxiv.org/abs/{found.group(1)}" if found else ""


def read_leaderboard(path: Path) -> Leaderboard:
    """A leaderboard JSON document (``leaderboard --format json``) back as a
    :class:`~abawbench.boards.build.Leaderboard`, its per-entry details included, so every
    format renders from a committed table without the runs. Fields a newer writer added are
    ignored; a field the rows need that is missing is a :class:`DataFormatError`."""
    data = read_json(path, dict, "a leaderboard JSON object")
    if data.get("format") != LEADERBOARD_JSON_FORMAT:
        raise DataFormatError(f"{path}: not a leaderboard JSON document (format {data.get('format')!r}, "
                              f"expected {LEADERBOARD_JSON_FORMAT!r})")
    row_fields = {f.name for f in dataclasses.fields(Row)}
    sections = []
    try:
        for number, section in enumerate(data["sections"]):
            rows = []
            for row in section["rows"]:
                known = {key: value for key, value in row.items() if key in row_fields}
                known["seed_list"] = tuple(known.get("seed_list", ()))
                rows.append(Row(**known))
            sections.append(Section(kind=section["kind"], title=section["title"], dataset=section["dataset"],
                                    fingerprint=section["fingerprint"], rows=tuple(rows),
                                    sub_score_names=tuple(section.get("sub_score_names", ())),
                                    origin=section.get("origin", "")))
        return Leaderboard(track=data["track"], primary_metric=data["primary_metric"],
                           higher_is_better=bool(data["higher_is_better"]), sections=tuple(sections),
                           version=data.get("abawbench_version", ""), details=data.get("details", {}))
    except (KeyError, TypeError) as exc:
        raise DataFormatError(f"{path}: leaderboard JSON lacks or misshapes {exc}") from None
