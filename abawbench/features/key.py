"""Cache keys: everything that changes a split's features, in one digest that names its file.

A key that ignores one setting silently returns stale results (lm-evaluation-harness #3881,
MTEB #5383), so a key covers the backbone, its weights, the code that computes its features
(not only what the plugin says about itself: a reinstalled plugin may build another network
under the same name and weights digest), the resolved preprocessing, the image decoder, the
dataset's fingerprint, the split and the cache format; and since a stale hit is worse than a
miss, values that cannot be put in canonical form are refused rather than approximated.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import dataclasses
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, ClassVar, Mapping, Protocol

import numpy as np

from abawbench.errors import CacheError

FORMAT_VERSION = 2
"""Bumped whenever the file layout or the meaning of a stored value changes (2: XXH3-128
chunk digests replaced format 1's block sums). Part of every key, so a new format never
reads an old file: the old file misses and is rebuilt under a new name."""

CACHE_ENV = "ABAWBENCH_CACHE"


def default_cache_root() -> Path:
    """``$ABAWBENCH_CACHE`` or ``~/.cache/abawbench``: one place for every cached artefact."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "abawbench"


def canonical(value: Any, where: str = "value") -> Any:
    """A JSON-ready, order-independent form of ``value`` so that equal settings digest equally.

    Tuples and lists become lists, numpy scalars and arrays become Python numbers and lists,
    integral floats become ints (``224.0`` and ``224`` are one input size), mappings get string
    keys (sorted at dump time). Non-integral floats are kept exactly: rounding would make
    different preprocessing share a key, and a stale hit is worse than a miss. Unknown types
    are refused rather than ``str()``-ed, since a repr with an address would miss forever.
    """
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CacheError(f"cache key: {where} is {value!r}; only finite numbers can be keyed")
        return int(value) if value.is_integer() else value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): canonical(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise CacheError(f"cache key: {where} has type {type(value).__name__}, which cannot be keyed")


def canonical_json(value: Any) -> str:
    """The one serialisation keys are digested in: canonical values, sorted keys, no spaces."""
    return json.dumps(canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fields_digest(fields: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a key's fields: what a key's :meth:`digest` is, and
    what a reader recomputes from a file's stored fields to check them."""
    return hashlib.sha256(canonical_json(fields).encode("utf-8")).hexdigest()


def safe_name(name: str) -> str:
    """``name`` as one readable path component (the digest, not this name, tells files apart)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "_"


def require_fields(key_type: type, fields: Mapping[str, Any]) -> None:
    """Refuse stored key ``fields`` that lack one of ``key_type``'s fields, naming them: such a
    file was written by an abawbench whose keys did not cover them, and is never hit again."""
    missing = [field.name for field in dataclasses.fields(key_type) if field.name not in fields]
    if missing:
        raise CacheError(f"stored key lacks {', '.join(missing)} (written by an older abawbench "
                         f"whose keys did not cover it; never read again)")


class EntryKey(Protocol):
    """What the cache needs of a key: its canonical fields, their digest, and where its file
    lies in its store. :class:`CacheKey` (features) and the pixel-pack key are the two kinds."""

    format_version: int

    def canonical(self) -> dict[str, Any]: ...

    def digest(self) -> str: ...

    def relative_path(self) -> PurePath: ...


class DigestKey:
    """Base of frozen dataclass keys: a key is a value, its canonical fields (every dataclass
    field, plus ``kind`` when a subclass sets one) and their digest are fixed when it is made (a
    mapping changed afterwards does not change the key) and computed once, since every cache
    hit compares keys several times. Two keys of one kind are equal iff their digests are."""

    kind: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        fields = {field.name: canonical(getattr(self, field.name), field.name) for field in dataclasses.fields(self)}
        if self.kind is not None:
            fields["kind"] = self.kind
        object.__setattr__(self, "_canonical_json", canonical_json(fields))
        object.__setattr__(self, "_digest", fields_digest(fields))

    def canonical(self) -> dict[str, Any]:
        return json.loads(self._canonical_json)  # type: ignore[attr-defined]

    def digest(self) -> str:
        """sha256 of the canonical JSON of every field."""
        return self._digest  # type: ignore[attr-defined]

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.digest() == other.digest()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self.digest())


@dataclass(frozen=True, eq=False)
class CacheKey(DigestKey):
    """Everything that changes a split's features. Two keys are equal iff their :meth:`digest`
    is (so ``(3, 224, 224)`` and ``[3, 224, 224]`` are one key).

    ``weights_digest`` identifies the weights (for a random init, the initial tensors
    themselves); ``model_code`` the code that turns them into features (library and supplying
    plugin versions); ``preprocessing`` is timm's resolved data config; ``decoder`` names the
    image decoders that turned the files into pixels. The file of a key made before a field
    existed lacks it: it is never hit again and reads as incomplete, so ``abawbench cache clear
    --bad`` removes it.
    """

    backbone: str
    weights_digest: str
    preprocessing: Mapping[str, Any]
    dataset_fingerprint: str
    split: str
    model_code: Mapping[str, Any]
    decoder: Mapping[str, Any]
    format_version: int = FORMAT_VERSION

    def relative_path(self) -> PurePath:
        """``<backbone>/<split>-<digest>.h5``: readable names; the digest decides."""
        return PurePath(safe_name(self.backbone), f"{safe_name(self.split)}-{self.digest()[:24]}.h5")

    @classmethod
    def from_canonical(cls, fields: Mapping[str, Any]) -> CacheKey:
        require_fields(cls, fields)
        try:
            return cls(
                backbone=str(fields["backbone"]),
                weights_digest=str(fields["weights_digest"]),
                preprocessing=dict(fields["preprocessing"]),
                dataset_fingerprint=str(fields["dataset_fingerprint"]),
                split=str(fields["split"]),
                model_code=dict(fields["model_code"]),
                decoder=dict(fields["decoder"]),
                format_version=int(fields["format_version"]),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise CacheError(f"stored key is incomplete or unreadable ({exc!r})") from exc
