"""Provenance recorded in every result: the library versions and the source commit.

Why: a score is only comparable with another when both were measured by the same code on the
same libraries; a result file that says which ones lets a reader (and ``compare``) tell.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

from abawbench import __version__

RECORDED_PACKAGES = ("torch", "timm", "numpy", "h5py", "pydantic", "pluggy")


def package_versions() -> dict[str, str]:
    """abawbench's, Python's and the installed versions of :data:`RECORDED_PACKAGES`."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"abawbench": __version__, "python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def git_commit() -> str | None:
    """The commit of the abawbench source tree, when it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
