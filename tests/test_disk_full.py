"""A full disk during a cache, pixel-pack, result or table write: one clear line, a failed entry
or a clean stop, never a crash, and nothing half-written left under a final name.

Two ways to fill a disk: a small tmpfs (only where the tests run as root and may mount; the
scenarios that once crashed the interpreter run in a child process, so a SIGSEGV is a failed
test rather than a dead suite) and an injected ENOSPC or a reported lack of free space, which
work everywhere.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from abawbench.cli import main
from abawbench.errors import RunFailedError, StorageError
from abawbench.features.store import FeatureCache
from abawbench.results import result_path, write_result
from abawbench.run.runner import Runner

from test_cache import ids, make_key
from test_leaderboard import make_result
from test_protocol import _config, lsd_tree, tiny_host  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[1]
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs, unmounted afterwards; skipped where mounting is not permitted."""
    folder = tmp_path / "small"
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def fill_up(folder: Path) -> None:
    """Take every free byte of ``folder``'s file system, as another program would."""
    try:
        with open(folder / "filler", "wb") as handle:
            handle.write(b"x" * (8 << 20))
    except OSError as exc:
        assert exc.errno == errno.ENOSPC


def run_child(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh interpreter with this checkout's code; a crash shows in its
    return code instead of killing the test run."""
    source = tmp_path / "child.py"
    source.write_text(textwrap.dedent(script))
    paths = [str(REPO), str(REPO / "plugins"), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]
    env = os.environ | {"PYTHONPATH": os.pathsep.join(p for p in paths if p), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(source)], capture_output=True, text=True, env=env, timeout=120)


CACHE_WRITE = """
    import sys
    from pathlib import Path
    import numpy as np
    from abawbench.errors import StorageError
    from abawbench.features.store import FeatureCache
    from test_cache import ids, make_key
    from test_disk_full import fill_up

    root, rows, fill_at = Path(sys.argv[1] if len(sys.argv) > 1 else "{root}"), {rows}, {fill_at}
    cache = FeatureCache(root)

    def produce(writer):
        for start in range(0, rows, 256):
            if start == fill_at:
                fill_up(root)  # another program takes the rest of the disk mid-write
            writer.write(start, np.ones((min(256, rows - start), 512), np.float32))

    try:
        cache.get_or_create(make_key(), ids(rows), 512, produce)
    except StorageError as exc:
        print("refused:", exc)
    leftovers = [p.name for p in cache.folder.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    print("left:", leftovers)
"""


def test_a_cache_entry_larger_than_the_free_space_is_refused_before_writing(small_disk, tmp_path):
    child = run_child(CACHE_WRITE.format(root=small_disk, rows=4000, fill_at=-1), tmp_path)
    assert child.returncode == 0, child.stderr  # once: SIGSEGV as h5py freed the failed file
    assert "refused:" in child.stdout and "needs about" in child.stdout and "left: []" in child.stdout


@pytest.mark.parametrize("fill_at", [0, 512])
def test_a_disk_that_fills_during_a_cache_write_fails_the_entry_without_a_crash(small_disk, tmp_path, fill_at):
    child = run_child(CACHE_WRITE.format(root=small_disk, rows=1000, fill_at=fill_at), tmp_path)
    assert child.returncode == 0, child.stderr
    assert "refused:" in child.stdout and "No space left on device" in child.stdout, child.stdout
    assert "left: []" in child.stdout and child.stdout.count("\n") == 2  # one line each, no HDF5 dump


def test_a_pixel_pack_that_cannot_be_written_is_skipped_without_a_crash(small_disk, tmp_path):
    child = run_child(f"""
        import torch
        from pathlib import Path
        from abawbench.features.pixel_packs import PixelPackStore, pack_key, with_pixel_pack
        from test_disk_full import fill_up

        root = Path("{small_disk}")
        store = PixelPackStore(root)
        key = pack_key({{"input_size": (3, 64, 64), "interpolation": "bilinear", "crop_pct": 1.0}}, "fp", "train")
        rows = 120  # 1.4 MiB of pixels: fits the free space, until another program takes it

        def decode(first):
            for start in range(first, rows, 30):
                if start == 60:
                    fill_up(root)
                yield start, torch.full((30, 3, 64, 64), start % 251, dtype=torch.uint8)

        seen = []
        stored = with_pixel_pack(store, key, [f"img{{i}}.jpg" for i in range(rows)], decode,
                                 lambda batches: seen.extend(start for start, _ in batches), batch_size=30)
        print("stored:", stored, "seen:", seen, "packs:", store.entries(), "unfinished:", store.unfinished())
    """, tmp_path)
    assert child.returncode == 0, child.stderr  # once: SIGBUS or SIGSEGV
    assert "stored: False seen: [0, 30, 60, 90] packs: [] unfinished: []" in child.stdout


def test_injected_enospc_in_a_cache_write_is_a_storage_error_and_stores_nothing(tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise ENOSPC

    monkeypatch.setattr(h5py.Dataset, "write_direct", disk_full)
    cache = FeatureCache(tmp_path / "cache")
    with pytest.raises(StorageError, match=r"cannot be written \(No space left on device\); free some space"):
        cache.get_or_create(make_key(), ids(300), 24, lambda w: w.write(0, np.ones((300, 24), np.float32)))
    assert cache.entries() == [] and cache.unfinished() == []


def test_too_little_free_space_refuses_the_entry_before_extracting(tmp_path, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=1000))
    produced: list[int] = []
    cache = FeatureCache(tmp_path / "cache")
    with pytest.raises(StorageError, match=r"needs about .* but only 0\.0 MiB is free"):
        cache.get_or_create(make_key(), ids(300), 24, lambda writer: produced.append(1))
    assert produced == [] and cache.entries() == []


def test_a_run_whose_cache_is_full_records_the_entry_as_failed(tmp_path, lsd_tree, tiny_host, monkeypatch):  # noqa: F811
    real = shutil.disk_usage
    cache_dir = tmp_path / "cache"
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda path: real(path)._replace(free=0) if str(path).startswith(str(cache_dir)) else real(path))
    summary = Runner(_config(tmp_path, lsd_tree, cache_dir=cache_dir), host=tiny_host, progress=False).run()
    [result] = summary.results
    assert result.status == "failed" and "StorageError" in result.error and "free" in result.error
    assert result_path(tmp_path / "runs", "lsd", result.entry, 0).exists()


def test_a_run_whose_results_disk_is_full_stops_with_one_line(small_disk, tmp_path, lsd_tree, tiny_host):  # noqa: F811
    fill_up(small_disk)
    runner = Runner(_config(tmp_path, lsd_tree, output=small_disk / "runs"), host=tiny_host, progress=False)
    with pytest.raises(RunFailedError, match="No space left on device.*no result can be recorded") as caught:
        runner.run()
    assert "\n" not in str(caught.value)
    # nothing written but the entry's claim (an empty lock file: abawbench.parallel.claims)
    assert not [p for p in small_disk.rglob("*") if p.is_file() and p.name != "filler" and p.suffix != ".claim"]


def test_a_result_write_onto_a_full_disk_leaves_nothing(small_disk):
    fill_up(small_disk)
    result = make_result("a__lp", 0.5)
    path = result_path(small_disk, result.track, result.entry, result.seed)
    with pytest.raises(StorageError, match=f"{path}: cannot be written"):
        write_result(path, result)
    assert not [p for p in small_disk.rglob("*") if p.is_file() and p.name != "filler"]


def leaderboard_onto(output: Path, runs: Path) -> list[str]:
    result = make_result("a__lp", 0.5)
    write_result(result_path(runs, result.track, result.entry, result.seed), result)
    return ["leaderboard", "--track", "lsd", "--runs", str(runs), "--output", str(output)]


def test_leaderboard_output_onto_a_full_disk_is_one_line_and_no_empty_table(small_disk, tmp_path, capsys):
    argv = leaderboard_onto(small_disk / "board.md", tmp_path / "runs")
    fill_up(small_disk)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "board.md: cannot be written (No space left on device)" in err
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_leaderboard_output_with_injected_enospc_is_one_line_and_no_file(tmp_path, capsys, monkeypatch):
    argv = leaderboard_onto(tmp_path / "boards" / "board.md", tmp_path / "runs")

    def disk_full(fd):
        raise ENOSPC

    monkeypatch.setattr(os, "fsync", disk_full)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "free some space there or write elsewhere" in err
    assert list((tmp_path / "boards").iterdir()) == []
