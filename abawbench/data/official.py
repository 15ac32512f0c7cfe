"""Readers and writers of the official ABAW4 file formats (see /work/shared/ABAW4.md).

This module is the file-format boundary: sentinel values (-5, -1) end here and leave as
``TaskLabels`` masks. Class and AU names always come from the Track, never from here.

Layout read (the synthetic generator writes exactly this):

    mtl: training_set_annotations.txt, validation_set_annotations.txt,
         MTL_Challenge_test_set_release.txt; images under cropped_aligned/<video>/<frame>.jpg
    lsd: training_set_synthetic_images/<CLASS>/*.jpg, validation_set_real_images/<CLASS>/*.jpg,
         LSD_Challenge_test_set_release.txt with its images in test_set_images/

Where the LSD test images live is not stated by the challenge material: ``test_set_images/``
is abawbench's convention.

Decisions worth knowing:

- Duplicate image names (the real MTL files have some): the first line is kept, every later
  one is reported as a warning (also when its labels differ) and counted in
  ``SampleIndex.duplicates``. Duplicates never fail a read: the real data has them.
- A path that leaves the data root (``..``, absolute) is an error, as is a missing image
  (with ``check_images``), a wrong column count, a non-numeric or out-of-range value and an
  unknown LSD class folder. ``ANGRER`` and ``ANGERE`` are read as ``ANGER``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from abawbench.data.check import SPLITS, Problem, raise_for_problems
from abawbench.data import parse_cache
from abawbench.data.fingerprint import list_folder, split_fingerprint, subfolders
from abawbench.data.index import SampleIndex
from abawbench.errors import ConfigError, DataFormatError
from abawbench.labels import TaskLabels
from abawbench.registry import suggest
from abawbench.specs import ReadOptions
from abawbench.tracks import Track

MTL_ANNOTATIONS = {
    "train": "training_set_annotations.txt",
    "validation": "validation_set_annotations.txt",
}
MTL_TEST_RELEASE = "MTL_Challenge_test_set_release.txt"
MTL_IMAGES = "cropped_aligned"
MTL_TEST_HEADER = ("image", "valence", "arousal", "expression", "aus")

LSD_FOLDERS = {
    "train": "training_set_synthetic_images",
    "validation": "validation_set_real_images",
}
LSD_TEST_RELEASE = "LSD_Challenge_test_set_release.txt"
LSD_TEST_IMAGES = "test_set_images"
LSD_TEST_HEADER = ("image", "expression")

FOLDER_ALIASES = {"ANGRER": "ANGER", "ANGERE": "ANGER"}
"""Misspelled class folders of the released LSD data (ABAW4.md), read as the class named."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class SplitMissing(DataFormatError):
    """The file or folder that holds a split is absent (``data check`` reports it as a
    warning; reading the split is an error)."""

    def __init__(self, path: Path, split: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: split {split!r} not found (expected this file or folder)")


# --------------------------------------------------------------------------- entry points


def read_split(root: Path, track: Track, split: str, options: ReadOptions) -> SampleIndex:
    """The :class:`SampleIndex` of one split of an official-layout tree.

    Strict by default: any bad row raises one :class:`DataFormatError` listing the first
    problems as ``file:line: problem``. ``options.skip_bad`` drops bad rows instead and
    counts them in ``SampleIndex.skipped``.
    """
    root = Path(root)
    index, problems = scan_split(root, track, split, check_images=options.check_images,
                                 cache_dir=options.cache_dir)
    raise_for_problems(problems, skip_bad=options.skip_bad, what=f"{track.name} {split} split of {root}")
    assert index is not None  # a None index always comes with a fatal problem
    return index


def scan_split(
    root: Path, track: Track, split: str, *, check_images: bool = True, cache_dir: Path | None = None
) -> tuple[SampleIndex | None, list[Problem]]:
    """Read a split collecting every problem without raising for bad data.

    Returns the index with bad rows dropped (None when the split cannot be read at all) and
    the problems in file order. Raises :class:`SplitMissing` when the split is absent.
    """
    root = Path(root)
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}{suggest(split, list(SPLITS))}; splits: {', '.join(SPLITS)}")
    if track.name == "mtl":
        if split == "test":
            return _scan_release(root, track, split, MTL_TEST_RELEASE, MTL_IMAGES, MTL_TEST_HEADER, check_images)
        return _scan_mtl_annotations(root, track, split, check_images, cache_dir)
    if track.name == "lsd":
        if split == "test":
            return _scan_release(root, track, split, LSD_TEST_RELEASE, LSD_TEST_IMAGES, LSD_TEST_HEADER, check_images)
        return _scan_lsd_folders(root, track, split, check_images)
    raise ConfigError(f"the official ABAW4 layout has no track {track.name!r}; tracks: mtl, lsd")


# --------------------------------------------------------------------------- shared pieces


@dataclass
class _Rows:
    """The data lines of an annotation file: text and 1-based line number of each."""

    file: str
    header: list[str]
    lines: list[str]
    numbers: list[int]


def _read_lines(
    path: Path, split: str, problems: list[Problem], raw: bytes | None = None
) -> tuple[_Rows | None, str]:
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
    return _Rows(str(path), header, body, numbers), digest


def _unsafe_reason(name: str) -> str | None:
    """Why an image name may not be used as a path below the image folder, or None."""
    if not name:
        return "empty image name"
    if name[0] in "/\\" or (len(name) > 1 and name[1] == ":"):
        return f"absolute image path {name!r} (must be relative to the data root)"
    if ".." in name.replace("\\", "/").split("/"):
        return f"image path {name!r} leaves the data root"
    return None


class _ImageLister:
    """Sizes of the image files named by a split, one ``os.scandir`` per folder instead of
    one ``Path.exists`` per row. The sizes go into the fingerprint; on Linux each costs a
    ``stat`` (``DirEntry`` carries no size there), which is most of the indexing time. A
    listing thread does not help: the GIL convoy lets it run only between the parser's
    switch intervals (measured: no gain)."""

    def __init__(self, base: Path, names: list[str], skip: dict[int, None]) -> None:
        safe = [name for row, name in enumerate(names) if row not in skip] if skip else names
        self.base = base
        self.folders = sorted({name.rpartition("/")[0] for name in safe})

    def sizes(self, names: list[str]) -> list[int]:
        """Size of each named file, -1 where it does not exist."""
        found: dict[str, int] = {}
        for folder in self.folders:
            prefix = f"{folder}/" if folder else ""
            listing = list_folder(self.base / folder) or {}
            found.update({prefix + file: size for file, size in listing.items()})
        get = found.get
        return [get(name, -1) for name in names]


def _flag_unsafe(rows: _Rows, names: list[str], bad: dict[int, None], problems: list[Problem]) -> None:
    """Names that would leave the image folder: reported and never touched on disk."""
    suspicious = [row for row, n in enumerate(names) if not n or n[0] in "/\\" or ".." in n or n[1:2] == ":"]
    for row in suspicious:
        reason = _unsafe_reason(names[row])
        if reason is not None:
            problems.append(Problem(rows.file, rows.numbers[row], reason))
            bad[row] = None


def _flag_missing(
    rows: _Rows, names: list[str], sizes: list[int], bad: dict[int, None],
    problems: list[Problem], image_dir: Path, check_images: bool,
) -> None:
    """With ``check_images``, rows whose image does not exist are errors."""
    if not check_images:
        return
    for row in [row for row, size in enumerate(sizes) if size < 0]:
        if row not in bad:
            problems.append(Problem(rows.file, rows.numbers[row], f"image not found: {image_dir / names[row]}"))
            bad[row] = None


def _first_occurrences(
    rows: _Rows, names: list[str], bad: dict[int, None], problems: list[Problem],
    same_labels: Callable[[int, int], bool] | None = None,
) -> tuple[list[int], int]:
    """Rows to keep: good rows, first occurrence of each name. Later duplicates are warnings
    (saying whether their labels agree with the kept line's, when rows have labels)."""
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


def _dropped_lines(rows: _Rows, bad: dict[int, None]) -> list[int]:
    return sorted(rows.numbers[row] for row in bad)


def _notes(skipped: int, duplicates: int) -> list[str]:
    notes = []
    if skipped:
        notes.append(f"{skipped} bad row(s) skipped")
    if duplicates:
        notes.append(f"{duplicates} duplicate image name(s): the first line of each was kept")
    return notes


# --------------------------------------------------------------------------- mtl train/validation


@dataclass
class _ParsedMtl:
    """What an MTL annotation file says, before the file system is consulted: a pure
    function of its bytes and the track (hence cacheable, see :mod:`parse_cache`)."""

    rows: _Rows  # ``lines`` is empty when the parse came from the cache
    digest: str
    names: list[str]
    va: np.ndarray  # float64 [N, 2], sentinels kept
    tails: np.ndarray  # int8 [N, 1 + AUs]: expression, AUs
    bad: dict[int, None]  # an ordered set of bad rows
    problems: list[Problem]


def _scan_mtl_annotations(
    root: Path, track: Track, split: str, check_images: bool, cache_dir: Path | None = None
) -> tuple[SampleIndex | None, list[Problem]]:
    parsed, problems = _parse_mtl_cached(root / MTL_ANNOTATIONS[split], split, track, cache_dir)
    if parsed is None:
        return None, problems
    rows, names, bad = parsed.rows, parsed.names, parsed.bad
    sizes = _ImageLister(root / MTL_IMAGES, names, bad).sizes(names)
    _flag_missing(rows, names, sizes, bad, problems, root / MTL_IMAGES, check_images)
    va, tails = parsed.va, parsed.tails
    same = lambda a, b: bool((va[a] == va[b]).all() and (tails[a] == tails[b]).all())  # noqa: E731
    keep, duplicates = _first_occurrences(rows, names, bad, problems, same)
    problems.sort(key=lambda p: (p.line or 0))

    keep_arr = np.asarray(keep, dtype=np.int64)
    labels = _mtl_labels(va[keep_arr], tails[keep_arr])
    paths = [f"{MTL_IMAGES}/{names[row]}" for row in keep]
    fingerprint = split_fingerprint(
        track.name, split, parsed.digest, paths, np.asarray(sizes, dtype=np.int64)[keep_arr],
        _dropped_lines(rows, bad),
    )
    index = SampleIndex(
        root=root, track=track.name, split=split, paths=paths, labels=labels,
        fingerprint=fingerprint, skipped=len(bad), duplicates=duplicates,
        notes=_notes(len(bad), duplicates),
    )
    return index, problems


def _parse_mtl_cached(
    path: Path, split: str, track: Track, cache_dir: Path | None = None
) -> tuple[_ParsedMtl | None, list[Problem]]:
    """:func:`_parse_mtl`, through the parse cache for large files. The parse is the
    caller's own (fresh or freshly loaded), to extend with file-system problems."""
    if not path.is_file():
        raise SplitMissing(path, split)
    raw = path.read_bytes()
    spaces = [f"{spec.name}:{spec.kind}:{','.join(spec.names)}" for spec in track.tasks]
    key = parse_cache.parse_key(raw, *spaces)
    stored = parse_cache.load(key, cache_dir) if raw.count(b"\n") >= parse_cache.MIN_LINES else None
    parsed = _parsed_from_cache(stored, path) if stored is not None else None
    if parsed is None:
        parsed, fatal = _parse_mtl(path, raw, split, track)
        if parsed is None:
            return None, fatal
        if len(parsed.names) >= parse_cache.MIN_LINES:
            parse_cache.store(key, _parsed_to_cache(parsed), cache_dir)
    return parsed, list(parsed.problems)


def _parsed_to_cache(parsed: _ParsedMtl) -> dict[str, np.ndarray]:
    problems = [json.dumps([p.line, p.message, p.severity]) for p in parsed.problems]
    return {
        "header": parse_cache.text_to_array([",".join(parsed.rows.header)]),
        "numbers": np.asarray(parsed.rows.numbers, dtype=np.int64),
        "names": parse_cache.text_to_array(parsed.names),
        "va": parsed.va, "tails": parsed.tails,
        "bad": np.asarray(list(parsed.bad), dtype=np.int64),
        "problems": parse_cache.text_to_array(problems),
        "counts": np.asarray([len(parsed.names), len(problems)], dtype=np.int64),
        "digest": np.array(parsed.digest),
    }


def _parsed_from_cache(stored: dict[str, np.ndarray], path: Path) -> _ParsedMtl | None:
    """The cached parse, or None when the entry does not hold what it should."""
    try:
        rows_count, problem_count = (int(n) for n in stored["counts"])
        problems = [
            Problem(str(path), line, message, severity)
            for line, message, severity in map(json.loads, parse_cache.array_to_text(stored["problems"], problem_count))
        ]
        rows = _Rows(str(path), parse_cache.array_to_text(stored["header"], 1)[0].split(","), [],
                     stored["numbers"].tolist())
        parsed = _ParsedMtl(
            rows=rows, digest=str(stored["digest"].item()),
            names=parse_cache.array_to_text(stored["names"], rows_count),
            va=stored["va"], tails=stored["tails"],
            bad=dict.fromkeys(stored["bad"].tolist()), problems=problems,
        )
    except (KeyError, ValueError, TypeError):
        return None
    if not (len(parsed.names) == len(rows.numbers) == len(parsed.va) == len(parsed.tails)):
        return None
    return parsed


def _parse_mtl(path: Path, raw: bytes, split: str, track: Track) -> tuple[_ParsedMtl | None, list[Problem]]:
    """Parse and validate every line of an MTL annotation file (no file-system access)."""
    au_names = track.task("au").names
    n_classes = track.task("expr").width
    expected = ("image", "valence", "arousal", "expression", *au_names)
    problems: list[Problem] = []
    rows, digest = _read_lines(path, split, problems, raw)
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
    _flag_unsafe(rows, names, bad, problems)
    va = _parse_va(rows, valence, arousal, bad, problems)
    tail_values = _parse_int_tails(rows, tails, bad, problems, n_classes, len(au_names))
    return _ParsedMtl(rows, digest, names, va, tail_values, bad, problems), problems


def _split_mtl_lines(
    rows: _Rows, columns: int, bad: dict[int, None], problems: list[Problem]
) -> tuple[list[str], list[str], list[str], list[str]]:
    """Names, valence and arousal strings, and the integer tail (``expr,AU1..AU12``) per row.

    The tail is kept as one string: it takes few distinct values (9 expressions x AU
    patterns), so it is parsed once per distinct value instead of 13 numbers per row.
    Comprehensions rather than one loop: each runs at C speed over 200k lines.
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
    rows: _Rows, valence: list[str], arousal: list[str], bad: dict[int, None], problems: list[Problem]
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
    rows: _Rows, tails: list[str], bad: dict[int, None], problems: list[Problem], n_classes: int, n_aus: int
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


def _mtl_labels(va: np.ndarray, tail: np.ndarray) -> dict[str, TaskLabels]:
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


# --------------------------------------------------------------------------- test release files


def _scan_release(
    root: Path, track: Track, split: str, file: str, image_folder: str,
    header: Sequence[str], check_images: bool,
) -> tuple[SampleIndex | None, list[Problem]]:
    """A test release file: one image name per line (other columns empty), no labels."""
    problems: list[Problem] = []
    rows, digest = _read_lines(root / file, split, problems)
    if rows is None:
        return None, problems
    if not rows.header or rows.header[0].lower() != "image":
        problems.append(Problem(rows.file, 1, f"header should be {','.join(header)!r}, got {','.join(rows.header)!r}", "fatal"))
        return None, problems
    bad: dict[int, None] = {}
    names: list[str] = []
    for row, line in enumerate(rows.lines):
        name, _, rest = line.partition(",")
        names.append(name.strip())
        if rest.replace(",", "").strip():
            problems.append(Problem(rows.file, rows.numbers[row], "values after the image name (a test release line holds the name only)"))
            bad[row] = None
    _flag_unsafe(rows, names, bad, problems)
    sizes = _ImageLister(root / image_folder, names, bad).sizes(names)
    _flag_missing(rows, names, sizes, bad, problems, root / image_folder, check_images)
    keep, duplicates = _first_occurrences(rows, names, bad, problems)
    problems.sort(key=lambda p: (p.line or 0))
    paths = [f"{image_folder}/{names[row]}" for row in keep]
    fingerprint = split_fingerprint(
        track.name, split, digest, paths, [sizes[row] for row in keep], _dropped_lines(rows, bad)
    )
    index = SampleIndex(
        root=root, track=track.name, split=split, paths=paths, labels={},
        fingerprint=fingerprint, skipped=len(bad), duplicates=duplicates,
        notes=_notes(len(bad), duplicates),
    )
    return index, problems


# --------------------------------------------------------------------------- lsd train/validation


def class_of_folder(folder: str, class_names: Sequence[str]) -> int | None:
    """Class index of an LSD folder name (case-insensitive, known misspellings accepted)."""
    upper = folder.upper()
    upper = FOLDER_ALIASES.get(upper, upper)
    lookup = {name.upper(): k for k, name in enumerate(class_names)}
    return lookup.get(upper)


def _scan_lsd_folders(
    root: Path, track: Track, split: str, check_images: bool
) -> tuple[SampleIndex | None, list[Problem]]:
    """One folder per class; the folder gives the label. ``check_images`` has nothing to
    check here: the listing is the set of images."""
    class_names = track.task("expr").names
    base = root / LSD_FOLDERS[split]
    if not base.is_dir():
        raise SplitMissing(base, split)
    problems: list[Problem] = []
    entries: list[tuple[str, int, int]] = []  # (relative path, size, class)
    skipped = 0
    seen_classes: set[int] = set()
    loose = list_folder(base) or {}
    for name in sorted(loose):
        if not name.startswith("."):
            problems.append(Problem(str(base / name), None, "file outside any class folder is ignored", "warning"))
    for folder in subfolders(base):
        listing = list_folder(base / folder) or {}
        images = sorted(n for n in listing if n.lower().endswith(IMAGE_SUFFIXES) and not n.startswith("."))
        label = class_of_folder(folder, class_names)
        if label is None:
            expected = ", ".join(class_names)
            problems.append(
                Problem(
                    str(base / folder), None,
                    f"unknown class folder {folder!r}{suggest(folder.upper(), list(class_names))}; "
                    f"classes: {expected} ({len(images)} image(s) not read)",
                )
            )
            skipped += len(images)
            continue
        seen_classes.add(label)
        others = sorted(n for n in listing if n not in images and not n.startswith("."))
        if others:
            problems.append(
                Problem(str(base / folder), None, f"{len(others)} non-image file(s) ignored, e.g. {others[0]!r}", "warning")
            )
        prefix = f"{LSD_FOLDERS[split]}/{folder}/"
        entries.extend((prefix + n, listing[n], label) for n in images)
    for label, name in enumerate(class_names):
        if label not in seen_classes:
            problems.append(Problem(str(base), None, f"no folder for class {name!r}", "warning"))
    paths = [path for path, _, _ in entries]
    expr = np.fromiter((label for _, _, label in entries), dtype=np.int64, count=len(entries))
    fingerprint = split_fingerprint(track.name, split, None, paths, [size for _, size, _ in entries])
    index = SampleIndex(
        root=root, track=track.name, split=split, paths=paths,
        labels={"expr": TaskLabels(expr, np.ones(len(entries), dtype=bool))},
        fingerprint=fingerprint, skipped=skipped, notes=_notes(skipped, 0),
    )
    return index, problems


# --------------------------------------------------------------------------- submissions


def _atomic_write(path: Path, text: str) -> None:
    """Write through a temporary name in the same folder, then rename: a killed writer never
    leaves a truncated submission behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", newline="\n", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


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
    expr_arr = _check_ints(_as_array(expr, (), "expr", rows), range(8), "expr")
    au_arr = _check_ints(_as_array(au, (12,), "au", rows), (0, 1), "au")
    names = _check_names_writable(names, rows)
    if (np.abs(va_arr) > 1).any():
        raise DataFormatError("cannot write submission: va values must lie in [-1, 1] (clip them first)")
    lines = [",".join(MTL_TEST_HEADER)]
    for name, (v, a), e, aus in zip(names, va_arr.tolist(), expr_arr.tolist(), au_arr.tolist()):
        lines.append(f"{name},{v:.6f},{a:.6f},{e}," + ",".join(map(str, aus)))
    _atomic_write(path, "\n".join(lines) + "\n")


def write_lsd_submission(path: Path, names: Sequence[str], labels: object) -> None:
    """An LSD submission: header ``image,expression``, then ``name,label`` with label 0..5."""
    label_arr = _check_ints(_as_array(labels, (), "labels"), range(6), "labels")
    names = _check_names_writable(names, label_arr.shape[0])
    lines = [",".join(LSD_TEST_HEADER)] + [f"{n},{k}" for n, k in zip(names, label_arr.tolist())]
    _atomic_write(path, "\n".join(lines) + "\n")


@dataclass
class MtlSubmission:
    names: list[str]
    va: np.ndarray
    expr: np.ndarray
    au: np.ndarray


def _submission_lines(path: Path, header: Sequence[str], columns: int) -> list[tuple[int, list[str]]]:
    if not Path(path).is_file():
        raise DataFormatError(f"{path}: submission file not found")
    problems: list[Problem] = []
    rows, _ = _read_lines(Path(path), "test", problems)
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
    parsed = _submission_lines(path, MTL_TEST_HEADER, 16)
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
        expr.append(_int_field(path, number, fields[3], range(8), "expression"))
        au.append([_int_field(path, number, f, range(2), "AU") for f in fields[4:]])
    return MtlSubmission(
        names=names,
        va=np.asarray(va, dtype=np.float32).reshape(-1, 2),
        expr=np.asarray(expr, dtype=np.int64),
        au=np.asarray(au, dtype=np.int64).reshape(-1, 12),
    )


def read_lsd_submission(path: Path) -> tuple[list[str], np.ndarray]:
    """Read back an LSD submission file: names and int64 labels."""
    parsed = _submission_lines(path, LSD_TEST_HEADER, 2)
    names = [fields[0] for _, fields in parsed]
    labels = [_int_field(path, n, fields[1], range(6), "label") for n, fields in parsed]
    return names, np.asarray(labels, dtype=np.int64)
