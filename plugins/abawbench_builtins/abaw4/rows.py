"""What every ABAW4 text file reader shares: lines with their true line numbers, image names
that must stay inside the data root, image sizes from one listing per folder, duplicates.

Every check appends a :class:`~abawbench.data.problems.Problem` naming ``file:line`` and marks
the row bad (``bad`` is an ordered set: a dict with None values); nothing raises for bad data,
so ``abawbench data check`` sees every problem and a strict read refuses with them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from abawbench.data.fingerprint import list_folder
from abawbench.data.problems import Problem, SplitMissing


@dataclass
class Rows:
    """The data lines of an annotation file: text and 1-based line number of each."""

    file: str
    header: list[str]
    lines: list[str]
    numbers: list[int]


def read_lines(
    path: Path, split: str, problems: list[Problem], raw: bytes | None = None
) -> tuple[Rows | None, str]:
    """Decode an annotation file into its header and non-blank data lines, plus its digest."""
    if raw is None:
        if not path.is_file():
            raise SplitMissing(path, split)
        raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        problems.append(Problem(str(path), line, f"not UTF-8 text ({exc.reason})", "fatal"))
        return None, digest
    lines = text.splitlines()
    if not lines:
        problems.append(Problem(str(path), None, "empty file (expected a header line)", "fatal"))
        return None, digest
    header = [field.strip() for field in lines[0].split(",")]
    body = lines[1:]
    numbers = list(range(2, len(body) + 2))
    if any(not line.strip() for line in body):  # blank lines carry nothing; keep line numbers true
        kept = [(n, line) for n, line in zip(numbers, body) if line.strip()]
        numbers = [n for n, _ in kept]
        body = [line for _, line in kept]
    return Rows(str(path), header, body, numbers), digest


def unsafe_reason(name: str) -> str | None:
    """Why an image name may not be used as a path below the image folder, or None."""
    if not name:
        return "empty image name"
    if name[0] in "/\\" or (len(name) > 1 and name[1] == ":"):
        return f"absolute image path {name!r} (must be relative to the data root)"
    if ".." in name.replace("\\", "/").split("/"):
        return f"image path {name!r} leaves the data root"
    return None


def image_sizes(base: Path, names: list[str], skip: dict[int, None]) -> list[int]:
    """Size of each named image below ``base``, -1 where it does not exist; rows in ``skip``
    (unsafe names) are never looked up on disk.

    One ``os.scandir`` per folder instead of one ``Path.exists`` per row. The sizes go into
    the fingerprint; on Linux each costs a ``stat`` (``DirEntry`` carries no size there),
    which is most of the indexing time. A listing thread does not help: the GIL lets it run
    only between the parser's switch intervals (docs/bench/data.md).
    """
    safe = [name for row, name in enumerate(names) if row not in skip] if skip else names
    found: dict[str, int] = {}
    for folder in sorted({name.rpartition("/")[0] for name in safe}):
        prefix = f"{folder}/" if folder else ""
        listing = list_folder(base / folder) or {}
        found.update({prefix + file: size for file, size in listing.items()})
    get = found.get
    return [get(name, -1) for name in names]


def flag_unsafe(rows: Rows, names: list[str], bad: dict[int, None], problems: list[Problem]) -> None:
    """Names that would leave the image folder: reported and never touched on disk."""
    suspicious = [row for row, n in enumerate(names) if not n or n[0] in "/\\" or ".." in n or n[1:2] == ":"]
    for row in suspicious:
        reason = unsafe_reason(names[row])
        if reason is not None:
            problems.append(Problem(rows.file, rows.numbers[row], reason))
            bad[row] = None


def flag_missing(
    rows: Rows, names: list[str], sizes: list[int], bad: dict[int, None],
    problems: list[Problem], image_dir: Path, check_images: bool,
) -> None:
    """With ``check_images``, rows whose image does not exist are errors."""
    if not check_images:
        return
    for row in [row for row, size in enumerate(sizes) if size < 0]:
        if row not in bad:
            problems.append(Problem(rows.file, rows.numbers[row], f"image not found: {image_dir / names[row]}"))
            bad[row] = None


def first_occurrences(
    rows: Rows, names: list[str], bad: dict[int, None], problems: list[Problem],
    same_labels: Callable[[int, int], bool] | None = None,
) -> tuple[list[int], int]:
    """Rows to keep: good rows, first occurrence of each name. Later duplicates are warnings
    (saying whether their labels agree with the kept line's, when rows have labels): the real
    MTL files have some, so duplicates never fail a read."""
    if len(set(names)) == len(names):  # the common case, without a Python loop per row
        return [row for row in range(len(names)) if row not in bad], 0
    first: dict[str, int] = {}
    keep: list[int] = []
    duplicates = 0
    for row, name in enumerate(names):
        if row in bad:
            continue
        earlier = first.get(name)
        if earlier is None:
            first[name] = row
            keep.append(row)
            continue
        duplicates += 1
        labels = ""
        if same_labels is not None:
            labels = ", same labels" if same_labels(earlier, row) else ", DIFFERENT labels"
        problems.append(
            Problem(
                rows.file,
                rows.numbers[row],
                f"duplicate image {name!r} (first on line {rows.numbers[earlier]}{labels}); "
                "this line is ignored",
                "warning",
            )
        )
    return keep, duplicates


def dropped_lines(rows: Rows, bad: dict[int, None]) -> list[int]:
    """Line numbers of the rows left out: they go into the fingerprint."""
    return sorted(rows.numbers[row] for row in bad)
