"""The labelled MTL splits: an annotation file per split, images under ``cropped_aligned/``.

Duplicate image names (the real files have some): the first line is kept, every later one is
reported as a warning (also when its labels differ) and counted in
``SampleIndex.duplicates``. The parse of large files goes through
:mod:`abawbench.data.parse_cache`; image listings are always read afresh.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from abawbench.data import parse_cache
from abawbench.data.fingerprint import split_fingerprint
from abawbench.data.index import SampleIndex
from abawbench.data.problems import Problem, SplitMissing, skipped_notes
from abawbench.specs import ReadOptions
from abawbench.tracks import Track

from abawbench_builtins.abaw4.layout import FINGERPRINT_VERSION, MTL_ANNOTATIONS, MTL_IMAGES
from abawbench_builtins.abaw4.mtl_parse import ParsedMtl, mtl_labels, parse_mtl
from abawbench_builtins.abaw4.rows import Rows, dropped_lines, first_occurrences, flag_missing, image_sizes


def scan_mtl_annotations(
    root: Path, track: Track, split: str, options: ReadOptions
) -> tuple[SampleIndex | None, list[Problem]]:
    """The index of a labelled MTL split and its problems."""
    parsed, problems = _parse_mtl_cached(root / MTL_ANNOTATIONS[split], split, track, options.cache_dir)
    if parsed is None:
        return None, problems
    rows, names, bad = parsed.rows, parsed.names, parsed.bad
    sizes = image_sizes(root / MTL_IMAGES, names, bad)
    flag_missing(rows, names, sizes, bad, problems, root / MTL_IMAGES, options.check_images)
    va, tails = parsed.va, parsed.tails
    same = lambda a, b: bool((va[a] == va[b]).all() and (tails[a] == tails[b]).all())  # noqa: E731
    keep, duplicates = first_occurrences(rows, names, bad, problems, same)
    problems.sort(key=lambda p: (p.line or 0))

    keep_arr = np.asarray(keep, dtype=np.int64)
    labels = mtl_labels(va[keep_arr], tails[keep_arr])
    paths = [f"{MTL_IMAGES}/{names[row]}" for row in keep]
    fingerprint = split_fingerprint(
        FINGERPRINT_VERSION, track.name, split, parsed.digest, paths,
        np.asarray(sizes, dtype=np.int64)[keep_arr], dropped_lines(rows, bad),
    )
    index = SampleIndex(
        root=root, track=track.name, split=split, paths=paths, labels=labels,
        fingerprint=fingerprint, skipped=len(bad), duplicates=duplicates,
        notes=skipped_notes(len(bad), duplicates),
    )
    return index, problems


def _parse_mtl_cached(
    path: Path, split: str, track: Track, cache_dir: Path | None = None
) -> tuple[ParsedMtl | None, list[Problem]]:
    """:func:`parse_mtl`, through the parse cache for large files. The parse is the caller's
    own (fresh or freshly loaded), to extend with file-system problems."""
    if not path.is_file():
        raise SplitMissing(path, split)
    raw = path.read_bytes()
    spaces = [f"{spec.name}:{spec.kind}:{','.join(spec.names)}" for spec in track.tasks]
    key = parse_cache.parse_key(raw, *spaces)
    stored = parse_cache.load(key, cache_dir) if raw.count(b"\n") >= parse_cache.MIN_LINES else None
    parsed = _parsed_from_cache(stored, path) if stored is not None else None
    if parsed is None:
        parsed, fatal = parse_mtl(path, raw, split, track)
        if parsed is None:
            return None, fatal
        if len(parsed.names) >= parse_cache.MIN_LINES:
            parse_cache.store(key, _parsed_to_cache(parsed), cache_dir)
    return parsed, list(parsed.problems)


def _parsed_to_cache(parsed: ParsedMtl) -> dict[str, np.ndarray]:
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


def _parsed_from_cache(stored: dict[str, np.ndarray], path: Path) -> ParsedMtl | None:
    """The cached parse, or None when the entry does not hold what it should."""
    try:
        rows_count, problem_count = (int(n) for n in stored["counts"])
        problems = [
            Problem(str(path), line, message, severity)
            for line, message, severity in map(json.loads, parse_cache.array_to_text(stored["problems"], problem_count))
        ]
        rows = Rows(str(path), parse_cache.array_to_text(stored["header"], 1)[0].split(","), [],
                    stored["numbers"].tolist())
        parsed = ParsedMtl(
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
