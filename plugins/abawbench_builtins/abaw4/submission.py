"""The submission files of both tracks (docs/abaw4.md): writers, and readers that check a file
the way the writers would have written it.

The writers refuse, rather than hide, anything the challenge would not accept (values outside
their range, NaN, a name holding ',' or a newline), and write atomically: a killed writer
never leaves a truncated submission behind. Decisions (argmax, thresholds, clipping) are the
track's (:meth:`abawbench.tracks.Track.write_submission`), not the writer's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from abawbench.atomic import atomic_write_text
from abawbench.data.problems import Problem, raise_for_problems
from abawbench.errors import DataFormatError

from abawbench_builtins.abaw4.layout import LSD_TEST_HEADER, MTL_TEST_HEADER
from abawbench_builtins.abaw4.rows import read_lines

MTL_EXPRESSIONS = 8
MTL_AUS = 12
LSD_EXPRESSIONS = 6


def _check_names_writable(names: Sequence[str], rows: int) -> list[str]:
    names = [str(n) for n in names]
    if len(names) != rows:
        raise DataFormatError(f"cannot write submission: {len(names)} names for {rows} prediction rows")
    for row, name in enumerate(names):
        if not name or any(c in name for c in ",\n\r"):
            raise DataFormatError(f"cannot write submission: image name {name!r} (row {row}) is empty or holds ',' or a newline")
    return names


def _as_array(values: object, shape_tail: tuple[int, ...], what: str, rows: int | None = None) -> np.ndarray:
    array = np.asarray(values)
    if array.shape[1:] != shape_tail or (rows is not None and array.shape[0] != rows):
        want = ("N" if rows is None else str(rows),) + tuple(str(s) for s in shape_tail)
        raise DataFormatError(f"cannot write submission: {what} has shape {array.shape}, expected [{', '.join(want)}]")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise DataFormatError(f"cannot write submission: {what} holds NaN or infinity")
    return array


def _check_ints(array: np.ndarray, allowed: Iterable[int], what: str) -> np.ndarray:
    allowed = set(allowed)
    as_int = array.astype(np.int64)
    if (as_int != array).any() or not set(np.unique(as_int).tolist()) <= allowed:
        raise DataFormatError(f"cannot write submission: {what} must be integers in {sorted(allowed)}")
    return as_int


def write_mtl_submission(
    path: Path, names: Sequence[str], va: object, expr: object, au: object
) -> None:
    """An MTL submission: the release header, then ``name,v,a,expr,au1..au12`` per image.

    ``va`` float ``[N, 2]`` in [-1, 1] (clip before: the writer refuses, rather than hides,
    out-of-range values), ``expr`` int ``[N]`` in 0..7, ``au`` ``[N, 12]`` of 0/1.
    """
    va_arr = _as_array(va, (2,), "va")
    rows = va_arr.shape[0]
    expr_arr = _check_ints(_as_array(expr, (), "expr", rows), range(MTL_EXPRESSIONS), "expr")
    au_arr = _check_ints(_as_array(au, (MTL_AUS,), "au", rows), (0, 1), "au")
    names = _check_names_writable(names, rows)
    if (np.abs(va_arr) > 1).any():
        raise DataFormatError("cannot write submission: va values must lie in [-1, 1] (clip them first)")
    lines = [",".join(MTL_TEST_HEADER)]
    for name, (v, a), e, aus in zip(names, va_arr.tolist(), expr_arr.tolist(), au_arr.tolist()):
        lines.append(f"{name},{v:.6f},{a:.6f},{e}," + ",".join(map(str, aus)))
    atomic_write_text(path, "\n".join(lines) + "\n")


def write_lsd_submission(path: Path, names: Sequence[str], labels: object) -> None:
    """An LSD submission: header ``image,expression``, then ``name,label`` with label 0..5."""
    label_arr = _check_ints(_as_array(labels, (), "labels"), range(LSD_EXPRESSIONS), "labels")
    names = _check_names_writable(names, label_arr.shape[0])
    lines = [",".join(LSD_TEST_HEADER)] + [f"{n},{k}" for n, k in zip(names, label_arr.tolist())]
    atomic_write_text(path, "\n".join(lines) + "\n")


@dataclass
class MtlSubmission:
    """An MTL submission file read back: names, ``va`` float32 ``[N, 2]``, ``expr`` int64
    ``[N]`` and ``au`` int64 ``[N, 12]``."""

    names: list[str]
    va: np.ndarray
    expr: np.ndarray
    au: np.ndarray


def _submission_lines(path: Path, header: Sequence[str], columns: int) -> list[tuple[int, list[str]]]:
    if not Path(path).is_file():
        raise DataFormatError(f"{path}: submission file not found")
    problems: list[Problem] = []
    rows, _ = read_lines(Path(path), "test", problems)
    if rows is not None and [h.lower() for h in rows.header] != list(header):
        problems.append(Problem(rows.file, 1, f"header should be {','.join(header)!r}", "fatal"))
    parsed: list[tuple[int, list[str]]] = []
    if rows is not None:
        for number, line in zip(rows.numbers, rows.lines):
            fields = [f.strip() for f in line.split(",")]
            if len(fields) != columns:
                problems.append(Problem(rows.file, number, f"expected {columns} columns, found {len(fields)}"))
            parsed.append((number, fields))
    raise_for_problems(problems, skip_bad=False, what=f"submission {path}")
    return parsed


def _int_field(path: Path, number: int, text: str, allowed: range, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value not in allowed:
        raise DataFormatError(f"{path}:{number}: {what} {text!r} is not an integer in {allowed.start}..{allowed.stop - 1}")
    return value


def read_mtl_submission(path: Path) -> MtlSubmission:
    """Read back an MTL submission file (the checks mirror the writer's)."""
    parsed = _submission_lines(path, MTL_TEST_HEADER, 4 + MTL_AUS)
    names, va, expr, au = [], [], [], []
    for number, fields in parsed:
        names.append(fields[0])
        try:
            pair = [float(fields[1]), float(fields[2])]
        except ValueError:
            raise DataFormatError(f"{path}:{number}: valence/arousal {fields[1:3]} are not numbers") from None
        if not all(-1 <= x <= 1 for x in pair):
            raise DataFormatError(f"{path}:{number}: valence/arousal {fields[1:3]} outside [-1, 1]")
        va.append(pair)
        expr.append(_int_field(path, number, fields[3], range(MTL_EXPRESSIONS), "expression"))
        au.append([_int_field(path, number, f, range(2), "AU") for f in fields[4:]])
    return MtlSubmission(
        names=names,
        va=np.asarray(va, dtype=np.float32).reshape(-1, 2),
        expr=np.asarray(expr, dtype=np.int64),
        au=np.asarray(au, dtype=np.int64).reshape(-1, MTL_AUS),
    )


def read_lsd_submission(path: Path) -> tuple[list[str], np.ndarray]:
    """Read back an LSD submission file: names and int64 labels."""
    parsed = _submission_lines(path, LSD_TEST_HEADER, 2)
    names = [fields[0] for _, fields in parsed]
    labels = [_int_field(path, n, fields[1], range(LSD_EXPRESSIONS), "label") for n, fields in parsed]
    return names, np.asarray(labels, dtype=np.int64)
