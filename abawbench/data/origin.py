"""Where a dataset tree came from: recorded beside every score, so generated data is never
taken for the real thing.

A tree written by a data generator (``abawbench data synth`` and any plugin that generates
data) carries a JSON manifest at its root naming the generator and its version. The core
knows no generator by name: any ``*.json`` file at the root whose object has both a
``generator`` and a ``generator_version`` field marks the tree as a synthetic stand-in, whatever
dataset plugin reads it (a generated tree in the official layout read as ``abaw4`` is still
synthetic). A tree without such a manifest has no recorded origin.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

MANIFEST_FIELDS = ("generator", "generator_version")
SYNTHETIC = "synthetic"
_LARGEST_MANIFEST = 1 << 20  # a manifest is small; a large JSON file at the root is data, not one


def data_origin(root: Path | str) -> dict[str, str]:
    """``{"kind": "synthetic", "generator", "version", "manifest"}`` for a generated tree,
    ``{}`` otherwise (or when ``root`` cannot be read)."""
    root = Path(root)
    try:
        candidates = sorted(root.glob("*.json"))
    except OSError:
        return {}
    for path in candidates:
        try:
            if path.stat().st_size > _LARGEST_MANIFEST:
                continue
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict) and all(field in manifest for field in MANIFEST_FIELDS):
            return {"kind": SYNTHETIC, "generator": str(manifest["generator"]),
                    "version": str(manifest["generator_version"]), "manifest": path.name}
    return {}


def origin_text(origin: Mapping[str, str]) -> str:
    """How tables name an origin: ``synthetic stand-in: generator synthface, version 2``, or
    ``""`` when none is recorded."""
    if origin.get("kind") != SYNTHETIC:
        return ""
    return f"synthetic stand-in: generator {origin.get('generator', '?')}, version {origin.get('version', '?')}"
