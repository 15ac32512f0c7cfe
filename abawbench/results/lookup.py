"""Finding an entry's result file by the name a user types.

Entry ids hold a digest (``hog__linear-probe-linear__cross-entropy__81f76bab``) so that two
configurations or two datasets never share a folder; nobody types that. Commands that take an
entry (``ensemble --members``, ``predict``) accept, in this order: the folder name, the
``entry`` of a result, its ``label``, or a prefix of a label or folder name. A name that fits
more than one entry is refused with the candidates listed, never settled by folder order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from abawbench.errors import ConfigError
from abawbench.results.files import read_result, result_path


@dataclass(frozen=True)
class _Candidate:
    path: Path
    entry: str
    label: str

    @property
    def folder(self) -> str:
        return self.path.parent.name


def find_entry_result(runs: Path, track: str | None, name: str, seed: int) -> Path:
    """The result file of the entry ``name`` at ``seed`` under ``runs`` (one track's folder,
    or with ``track`` None every track's); :class:`ConfigError` when no entry or several fit."""
    runs = Path(runs)
    where = runs / track if track is not None else runs
    if track is not None and result_path(runs, track, name, seed).is_file():
        return result_path(runs, track, name, seed)
    candidates = list(_candidates(runs, track, seed))
    exact = [c for c in candidates if name in (c.folder, c.entry, c.label)]
    matches = exact or [c for c in candidates if name and (c.label.startswith(name) or c.folder.startswith(name))]
    if len(matches) == 1:
        return matches[0].path
    if matches:
        listed = ", ".join(f"{c.label} ({c.path.parent.relative_to(runs)})" for c in matches)
        raise ConfigError(f"entry {name!r} is ambiguous under {where}: it fits {len(matches)} entries: "
                          f"{listed}; give a longer label or the folder name")
    known = ", ".join(sorted({c.label for c in candidates})) or "none"
    raise ConfigError(f"no result for entry {name!r} seed {seed} under {where}; entries there: {known}")


def _candidates(runs: Path, track: str | None, seed: int) -> Iterator[_Candidate]:
    """Every entry with a result at ``seed``, with its entry id and label."""
    if track is not None:
        folders = [runs / track]
    else:
        folders = sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []
    for folder in folders:
        for path in sorted(folder.glob(f"*/seed{seed}.json")):
            result = read_result(path)
            yield _Candidate(path=path, entry=result.entry, label=result.label)
