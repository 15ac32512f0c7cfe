"""What an MTL annotation file says, before the file system is consulted.

The parse is a pure function of the file's bytes and the track's label spaces, which is what
lets :mod:`abawbench.data.parse_cache` keep it. Sentinels (VA -5, expression -1, AU -1) are
kept here as values; :func:`mtl_labels` turns them into masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from abawbench.data.problems import Problem
from abawbench.labels import TaskLabels
from abawbench.tracks import Track

from abawbench_builtins.abaw4.rows import Rows, flag_unsafe, read_lines


@dataclass
class ParsedMtl:
    """One parsed MTL annotation file: rows, per-row values with sentinels, bad rows."""

    rows: Rows  # ``lines`` is empty when the parse came from the cache
    digest: str
    names: list[str]
    va: np.ndarray  # float64 [N, 2], sentinels kept
    tails: np.ndarray  # int8 [N, 1 + AUs]: expression, AUs
    bad: dict[int, None]  # an ordered set of bad rows
    problems: list[Problem]


def parse_mtl(path: Path, raw: bytes, split: str, track: Track) -> tuple[ParsedMtl | None, list[Problem]]:
    """Parse and validate every line of an MTL annotation file (no file-system access)."""
    au_names = track.task("au").names
    n_classes = track.task("expr").width
    expected = ("image", "valence", "arousal", "expression", *au_names)
    problems: list[Problem] = []
    rows, digest = read_lines(path, split, problems, raw)
    if rows is None:
        return None, problems
    if len(rows.header) != len(expected) or rows.header[0].lower() != "image":
        problems.append(
            Problem(rows.file, 1, f"header should be {','.join(expected)!r}, got {','.join(rows.header)!r}", "fatal")
        )
        return None, problems
    if [h.lower() for h in rows.header] != [e.lower() for e in expected]:
        problems.append(
            Problem(rows.file, 1, f"header names differ from {','.join(expected)!r}; columns read in that order", "warning")
        )
    bad: dict[int, None] = {}
    names, valence, arousal, tails = _split_mtl_lines(rows, len(expected), bad, problems)
    flag_unsafe(rows, names, bad, problems)
    va = _parse_va(rows, valence, arousal, bad, problems)
    tail_values = _parse_int_tails(rows, tails, bad, problems, n_classes, len(au_names))
    return ParsedMtl(rows, digest, names, va, tail_values, bad, problems), problems


def _split_mtl_lines(
    rows: Rows, columns: int, bad: dict[int, None], problems: list[Problem]
) -> tuple[list[str], list[str], list[str], list[str]]:
    """Names, valence and arousal strings, and the integer tail (``expr,AU1..AU12``) per row.

    The tail is kept as one string: it takes few distinct values (9 expressions x AU
    patterns), so it is parsed once per distinct value instead of 13 numbers per row.
    Comprehensions rather than one loop: each runs at C speed over every line.
    """
    parts = [line.split(",", 3) for line in rows.lines]
    # Rows with all four parts have their column count checked with their (distinct) tail.
    for row in [row for row, p in enumerate(parts) if len(p) != 4]:
        problems.append(Problem(rows.file, rows.numbers[row], f"expected {columns} columns, found {len(parts[row])}"))
        bad[row] = None
        parts[row] = (parts[row] + ["", "", "", ""])[:4]  # pad so columns line up
    names = [p[0].strip() for p in parts]
    return names, [p[1] for p in parts], [p[2] for p in parts], [p[3] for p in parts]


def _floats(texts: list[str]) -> np.ndarray:
    """Strings to float64; NaN where a string is not a number (found on the slow path only)."""
    try:
        return np.fromiter(map(float, texts), dtype=np.float64, count=len(texts))
    except ValueError:
        values = np.empty(len(texts))
        for row, text in enumerate(texts):
            try:
                values[row] = float(text)
            except ValueError:
                values[row] = np.nan
        return values


def _parse_va(
    rows: Rows, valence: list[str], arousal: list[str], bad: dict[int, None], problems: list[Problem]
) -> np.ndarray:
    """Valence/arousal as float ``[N, 2]``; non-numeric and out-of-range rows flagged."""
    values = np.stack([_floats(valence), _floats(arousal)], axis=1) if valence else np.zeros((0, 2))
    ok = (np.abs(values) <= 1.0) | (values == -5.0)  # NaN and infinity fail both
    for row in np.nonzero(~ok.all(axis=1))[0].tolist():
        if row in bad:
            continue  # already reported (column count)
        for col, (what, texts) in enumerate((("valence", valence), ("arousal", arousal))):
            if not ok[row, col]:
                kind = "out-of-range" if np.isfinite(values[row, col]) else "non-numeric"
                problems.append(
                    Problem(rows.file, rows.numbers[row],
                            f"{kind} {what} {texts[row].strip()!r} (expected -1..1, or -5: missing)")
                )
        bad[row] = None
    return values


def _parse_int_tails(
    rows: Rows, tails: list[str], bad: dict[int, None], problems: list[Problem], n_classes: int, n_aus: int
) -> np.ndarray:
    """``[N, 1 + n_aus]`` int8 of expression and AUs, parsed once per distinct tail string."""
    codes = dict.fromkeys(tails)  # distinct tails in first-seen order, at C speed
    for code, tail in enumerate(codes):
        codes[tail] = code
    row_codes = np.fromiter(map(codes.__getitem__, tails), dtype=np.int64, count=len(tails))
    table = np.zeros((len(codes), 1 + n_aus), dtype=np.int8)
    reasons: dict[int, str] = {}
    tokens = {str(k): k for k in range(-1, max(n_classes, 2))}  # the usual spellings, no float()
    for tail, code in codes.items():
        parsed, reason = _parse_tail(tail, n_classes, n_aus, tokens)
        if reason is None:
            table[code] = parsed
        else:
            reasons[code] = reason
    if reasons:
        for row in np.nonzero(np.isin(row_codes, list(reasons)))[0].tolist():
            if row not in bad:
                problems.append(Problem(rows.file, rows.numbers[row], reasons[int(row_codes[row])]))
                bad[row] = None
    return table[row_codes] if len(tails) else np.zeros((0, 1 + n_aus), dtype=np.int8)


def _parse_tail(tail: str, n_classes: int, n_aus: int, tokens: dict[str, int]) -> tuple[list[int], str | None]:
    """One ``expr,AU1..AUk`` string: values, or the reason it is bad."""
    fields = tail.split(",")
    if len(fields) != 1 + n_aus:
        return [], f"expected {4 + n_aus} columns, found {3 + len(fields)}"
    values: list[int] = []
    for col, text in enumerate(fields):
        number = tokens.get(text)
        if number is None:  # an unusual spelling ("1.0", " 1") or a bad value
            try:
                as_float = float(text)
            except ValueError:
                what = "expression" if col == 0 else f"AU column {col}"
                return [], f"non-numeric {what} {text.strip()!r}"
            number = int(as_float) if as_float.is_integer() else None
        allowed = range(-1, n_classes) if col == 0 else (-1, 0, 1)
        if number is None or number not in allowed:
            what = "expression" if col == 0 else f"AU column {col}"
            expected = f"-1..{n_classes - 1}" if col == 0 else "-1, 0 or 1"
            return [], f"out-of-range {what} {text.strip()!r} (expected {expected})"
        values.append(number)
    return values, None


def mtl_labels(va: np.ndarray, tail: np.ndarray) -> dict[str, TaskLabels]:
    """Sentinels become masks here: VA iff both > -5, expression iff >= 0, AUs iff all >= 0."""
    va_mask = (va > -5).all(axis=1)
    expr = tail[:, 0].astype(np.int64)
    expr_mask = expr >= 0
    aus = tail[:, 1:].astype(np.float32)
    au_mask = (aus >= 0).all(axis=1)
    return {
        "va": TaskLabels(np.where(va_mask[:, None], va, 0).astype(np.float32), va_mask),
        "expr": TaskLabels(np.where(expr_mask, expr, 0), expr_mask),
        "au": TaskLabels(np.where(au_mask[:, None], aus, 0).astype(np.float32), au_mask),
    }
