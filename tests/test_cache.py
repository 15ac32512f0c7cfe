"""The feature cache: keys, hits and misses, crash safety, concurrency, corruption, verified
threaded reads, CLI."""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np

import pytest

from abawbench.atomic import is_temporary
from abawbench.cli import main
from abawbench.errors import CacheError
from abawbench.features.entry import chunk_checksum
from abawbench.features.key import FORMAT_VERSION, CacheKey, default_cache_root
from abawbench.features.reads import BadRows, for_each_chunk
from abawbench.features.store import FeatureCache

ROWS, DIM = 300, 24
CHUNK_BYTES = 64 * DIM * 2  # 64 rows per chunk: even tiny test arrays span several chunks
PREPROCESSING = {
    "input_size": (3, 224, 224),
    "interpolation": "bicubic",
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
    "crop_pct": 0.875,
    "crop_mode": "center",
}
REPO = Path(__file__).resolve().parents[1]


def make_key(**changes) -> CacheKey:
    fields = dict(
        backbone="timm:resnet18",
        weights_digest="sha256:abc",
        preprocessing=PREPROCESSING,
        dataset_fingerprint="fp-1",
        split="train",
        model_code={"torch": "2.5.1", "timm": "1.0.12",
                    "plugin": {"plugin": "builtin.timm", "distribution": "abawbench", "version": "0.1.0"}},
        decoder={"jpeg": "torchvision.io.decode_jpeg (torchvision 0.20.1)", "other": "Pillow 11.0.0"},
    )
    fields.update(changes)
    return CacheKey(**fields)


def features(rows: int = ROWS, dim: int = DIM, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)


def ids(rows: int = ROWS) -> list[str]:
    return [f"video{i % 7}/{i:05d}.jpg" for i in range(rows)]


class Producer:
    """A produce callback that writes ``data`` in batches and counts its calls."""

    def __init__(self, data: np.ndarray, batch: int = 37, fail_at: int | None = None) -> None:
        self.data, self.batch, self.fail_at, self.calls = data, batch, fail_at, 0

    def __call__(self, writer) -> None:
        self.calls += 1
        for start in range(0, len(self.data), self.batch):
            if self.fail_at is not None and start >= self.fail_at:
                raise RuntimeError("backbone crashed")
            writer.write(start, self.data[start : start + self.batch])


@pytest.fixture
def cache(tmp_path) -> FeatureCache:
    return FeatureCache(tmp_path / "cache", chunk_bytes=CHUNK_BYTES)


def fill(cache: FeatureCache, key: CacheKey | None = None, data: np.ndarray | None = None):
    key = key or make_key()
    data = features() if data is None else data
    producer = Producer(data)
    entry = cache.get_or_create(key, ids(len(data)), data.shape[1], producer)
    return entry, producer


def data_offset(path: Path, chunk: int = 1) -> int:
    """Byte offset of a chunk of ``/features`` (rows ``chunk * chunk_rows`` on)."""
    with h5py.File(path, "r") as f:
        return f["features"].id.get_chunk_info(chunk).byte_offset


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x40]))


# --------------------------------------------------------------------------- keys


def test_default_root_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ABAWBENCH_CACHE", str(tmp_path / "x"))
    assert default_cache_root() == tmp_path / "x"
    monkeypatch.delenv("ABAWBENCH_CACHE")
    assert default_cache_root() == Path.home() / ".cache" / "abawbench"


@pytest.mark.parametrize(
    "changes",
    [
        {"backbone": "timm:resnet50"},
        {"weights_digest": "sha256:abd"},
        {"dataset_fingerprint": "fp-2"},
        {"split": "validation"},
        {"preprocessing": {**PREPROCESSING, "mean": (0.5, 0.456, 0.406)}},
        {"preprocessing": {**PREPROCESSING, "input_size": (3, 112, 112)}},
        {"preprocessing": {**PREPROCESSING, "crop_pct": 0.9}},
        {"preprocessing": {**PREPROCESSING, "interpolation": "bilinear"}},
        {"preprocessing": {k: v for k, v in PREPROCESSING.items() if k != "crop_mode"}},
        {"model_code": {"torch": "2.5.1", "timm": "1.0.12",
                        "plugin": {"plugin": "builtin.timm", "distribution": "abawbench", "version": "0.2.0"}}},
        {"model_code": {"torch": "2.6.0", "timm": "1.0.12",
                        "plugin": {"plugin": "builtin.timm", "distribution": "abawbench", "version": "0.1.0"}}},
        {"decoder": {"jpeg": "Pillow 11.0.0", "other": "Pillow 11.0.0"}},
    ],
    ids=lambda c: next(iter(c)) if "preprocessing" not in c else "preprocessing",
)
def test_changing_any_key_part_misses(cache, changes):
    fill(cache)
    other = make_key(**changes)
    assert other != make_key() and other.digest() != make_key().digest()
    assert cache.path_for(other) != cache.path_for(make_key())
    entry, producer = fill(cache, other)
    assert producer.calls == 1 and entry.key == other


def test_other_format_version_misses_and_is_not_written(cache):
    fill(cache)
    newer = make_key(format_version=FORMAT_VERSION + 1)
    assert newer.digest() != make_key().digest()
    with pytest.raises(CacheError, match=f"writes version {FORMAT_VERSION}"):
        fill(cache, newer)


def test_equivalent_preprocessing_spellings_share_a_key():
    spelled = {
        **PREPROCESSING,
        "input_size": [3, 224.0, np.int64(224)],
        "mean": np.array([0.485, 0.456, 0.406]),
        "crop_pct": np.float64(0.875),
    }
    reordered = dict(reversed(list(spelled.items())))
    assert make_key(preprocessing=reordered).digest() == make_key().digest()


def test_unkeyable_values_are_refused():
    with pytest.raises(CacheError, match="preprocessing.mean"):
        make_key(preprocessing={"mean": object()}).digest()
    with pytest.raises(CacheError, match="finite"):
        make_key(preprocessing={"mean": float("nan")}).digest()


def test_file_stores_the_full_key(cache):
    entry, _ = fill(cache)
    with h5py.File(entry.path, "r") as f:
        assert f.attrs["key.backbone"] == "timm:resnet18"
        assert json.loads(f.attrs["key.preprocessing"])["input_size"] == [3, 224, 224]
        assert f.attrs["key_digest"] == make_key().digest()
        assert f["features"].dtype == np.float16 and f["features"].chunks == (64, DIM)


# --------------------------------------------------------------------------- hit and miss


def test_miss_then_hit_returns_the_same_features(cache):
    data = features()
    entry, producer = fill(cache, data=data)
    assert producer.calls == 1
    np.testing.assert_array_equal(entry.read(), data.astype(np.float16).astype(np.float32))
    assert entry.read().dtype == np.float32
    np.testing.assert_array_equal(entry.read_float16(), data.astype(np.float16))
    again, producer2 = fill(cache, data=features(seed=1))
    assert producer2.calls == 0 and again.path == entry.path
    np.testing.assert_array_equal(again.read(), entry.read())
    assert again.sample_ids == ids()
    assert (entry.num_rows, entry.feature_dim) == (ROWS, DIM)


def test_writer_accepts_torch_tensors_of_any_float_dtype(cache):
    import torch

    data = features()

    def produce(writer):
        writer.write(0, torch.from_numpy(data[:100]).to(torch.bfloat16))
        writer.write(100, torch.from_numpy(data[100:]).double())

    entry = cache.get_or_create(make_key(), ids(), DIM, produce)
    expected = data.copy()
    expected[:100] = torch.from_numpy(data[:100]).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(entry.read(), expected.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize(
    "produce, message",
    [
        (lambda w: w.write(5, features(10)), "starts at row 5; expected row 0"),
        (lambda w: (w.write(0, features(10)), w.write(5, features(10))), "expected row 10"),
        (lambda w: w.write(0, features(10, DIM + 1)), r"expected \[rows, 24\]"),
        (lambda w: w.write(0, features(ROWS + 1)), "the split has 300 rows"),
        (lambda w: w.write(0, features(100)), "wrote 100 of 300 rows"),
        (lambda w: w.write(0, np.full((ROWS, DIM), 1e6)), "row 0 are NaN or outside the float16"),
        (lambda w: w.write(0, np.ones((ROWS, DIM), np.int32)), "floating point"),
    ],
)
def test_writer_refuses_bad_batches_and_stores_nothing(cache, produce, message):
    with pytest.raises(CacheError, match=message):
        cache.get_or_create(make_key(), ids(), DIM, produce)
    assert cache.entries() == [] and cache.unfinished() == []
    assert list(cache.folder.rglob("*.h5*")) == list(cache.folder.rglob("*.lock"))


# --------------------------------------------------------------------------- crash safety


def test_produce_failing_halfway_leaves_nothing(cache):
    producer = Producer(features(), fail_at=150)
    with pytest.raises(RuntimeError, match="backbone crashed"):
        cache.get_or_create(make_key(), ids(), DIM, producer)
    assert not [p for p in cache.folder.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert cache.entries() == []
    entry, producer = fill(cache)
    assert producer.calls == 1 and entry.read().shape == (ROWS, DIM)


CHILD = r"""
import hashlib, os, sys, time
from pathlib import Path
import numpy as np
from abawbench.features.store import FeatureCache
sys.path.insert(0, {tests!r})
from test_cache import CHUNK_BYTES, ROWS, features, ids, make_key

root, mode, marker = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
data = features()

def produce(writer):
    with open(marker, "a") as fh:
        fh.write(f"{{os.getpid()}}\n")
    for start in range(0, ROWS, 30):
        writer.write(start, data[start:start + 30])
        if mode == "hang" and start >= ROWS // 2:
            Path(str(marker) + ".ready").touch()
            time.sleep(60)
        time.sleep(0.05)

Path(str(marker) + f".{{os.getpid()}}.up").touch()
while not Path(str(marker) + ".go").exists():
    time.sleep(0.01)
entry = FeatureCache(root, chunk_bytes=CHUNK_BYTES).get_or_create(make_key(), ids(), data.shape[1], produce)
print(hashlib.sha256(entry.read_float16().tobytes()).hexdigest())
"""


def spawn_child(root: Path, mode: str, marker: Path) -> subprocess.Popen:
    code = CHILD.format(tests=str(Path(__file__).parent))
    return subprocess.Popen(
        [sys.executable, "-c", code, str(root), mode, str(marker)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_writer_killed_mid_write_leaves_nothing_that_is_used(cache, tmp_path):
    marker = tmp_path / "calls"
    child = spawn_child(cache.root, "hang", marker)
    Path(str(marker) + ".go").touch()
    try:
        wait_for(lambda: Path(str(marker) + ".ready").exists() or child.poll() is not None, "half a write")
        assert child.poll() is None, child.stderr.read()
        [temporary] = cache.unfinished()
        assert is_temporary(temporary) and temporary.name.startswith(f".{cache.path_for(make_key()).name}.")
        assert not cache.path_for(make_key()).exists()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert cache.entries() == [] and cache.unfinished() == [temporary]
    entry, producer = fill(cache)  # the dead writer's lock is gone with its process
    assert producer.calls == 1
    np.testing.assert_array_equal(entry.read(), features().astype(np.float16).astype(np.float32))
    assert cache.unfinished() == []  # the next writer of the key removed the leftover


def test_two_processes_asking_for_one_key_produce_it_once(cache, tmp_path):
    marker = tmp_path / "calls"
    children = [spawn_child(cache.root, "slow", marker) for _ in range(2)]
    wait_for(lambda: len(list(tmp_path.glob("calls.*.up"))) == 2 or any(c.poll() is not None for c in children),
             "both children to start")
    Path(str(marker) + ".go").touch()
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        outputs.append(out.strip())
    assert len(marker.read_text().split()) == 1
    expected = features().astype(np.float16)
    assert outputs[0] == outputs[1] == __import__("hashlib").sha256(expected.tobytes()).hexdigest()


# --------------------------------------------------------------------------- corruption


def test_flipped_data_byte_is_named_never_returned_and_rebuilt(cache, caplog):
    entry, _ = fill(cache)
    flip_byte(entry.path, data_offset(entry.path) + 100)
    assert "rows 64..127 fail their checksum" in cache.verify(entry.path)[0]
    with pytest.raises(CacheError, match=r"rows 64\.\.127 fail their checksum"):
        list(entry.iter_batches(50))  # a stream cannot take back what it handed out: it fails
    assert not entry.path.exists()  # and the file is gone, so the next request rebuilds it
    entry, producer = fill(cache)
    flip_byte(entry.path, data_offset(entry.path) + 100)
    with caplog.at_level(logging.WARNING):
        np.testing.assert_array_equal(entry.read(), features().astype(np.float16).astype(np.float32))
    assert producer.calls == 2 and "rows 64..127 fail their checksum" in caplog.text and "rebuilt" in caplog.text
    assert cache.verify(entry.path) == []


def test_a_hit_reads_the_data_once_and_a_corrupt_hit_is_rebuilt(cache, monkeypatch):
    data = features()
    producer = Producer(data)
    first = cache.get_or_create(make_key(), ids(), DIM, producer).read()
    np.testing.assert_array_equal(first, data.astype(np.float16).astype(np.float32))
    bytes_read = []
    real_preadv = os.preadv
    monkeypatch.setattr(os, "preadv", lambda fd, buffers, offset: bytes_read.append(
        real_preadv(fd, buffers, offset)) or bytes_read[-1])
    np.testing.assert_array_equal(cache.get_or_create(make_key(), ids(), DIM, producer).read(), first)
    assert producer.calls == 1 and sum(bytes_read) == ROWS * DIM * 2  # every stored byte, once
    flip_byte(cache.path_for(make_key()), data_offset(cache.path_for(make_key())) + 100)
    np.testing.assert_array_equal(cache.get_or_create(make_key(), ids(), DIM, producer).read(), first)
    assert producer.calls == 2  # the corrupt hit was rebuilt, never returned


def test_many_chunk_file_reads_back_exactly_and_names_the_first_bad_rows(cache, caplog):
    """A file of many chunks (split over as many reading threads as this machine gives) reads
    back exactly, and with two corrupt chunks the lower one is named, by verification, by a
    stream and by the rebuilding read."""
    rows = 64 * 20  # 20 chunks of 64 rows
    data = features(rows)
    producer = Producer(data)
    entry = cache.get_or_create(make_key(), ids(rows), DIM, producer)
    np.testing.assert_array_equal(entry.read(), data.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(entry.read_float16(), data.astype(np.float16))
    flip_byte(entry.path, data_offset(entry.path, 15) + 60 * DIM * 2 + 8)  # near the end of chunk 15
    assert "rows 960..1023 fail their checksum" in cache.verify(entry.path)[0]
    flip_byte(entry.path, data_offset(entry.path, 4) + 8)
    assert "rows 256..319 fail their checksum" in cache.verify(entry.path)[0]
    with caplog.at_level(logging.WARNING):
        np.testing.assert_array_equal(entry.read_float16(), data.astype(np.float16))
    assert "rows 256..319 fail their checksum" in caplog.text and producer.calls == 2


def test_a_read_that_fails_for_good_names_the_rows_and_restores_torch_threads(cache, monkeypatch):
    """An I/O error is bad rows too: the entry is rebuilt once, and if reading still fails the
    error names the file and rows; torch's thread setting is restored either way."""
    import errno

    import torch

    entry, producer = fill(cache)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        entry.read()
        assert torch.get_num_threads() == 2

        def failing_disk(*args):
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(os, "preadv", failing_disk)
        with pytest.raises(CacheError, match=r"\.h5: rows 0\.\.63 cannot be read: Input/output error"):
            entry.read()
        assert torch.get_num_threads() == 2  # restored after a failed read too
        assert producer.calls == 2  # rebuilt once, then the error
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("keep", [0.5, 0.95, 0.0])
def test_truncated_file_is_detected_and_rebuilt(cache, keep):
    entry, _ = fill(cache)
    size = entry.path.stat().st_size
    with open(entry.path, "r+b") as fh:
        fh.truncate(int(size * keep))
    assert cache.verify(entry.path)
    rebuilt, producer = fill(cache)
    assert producer.calls == 1
    np.testing.assert_array_equal(rebuilt.read(), features().astype(np.float16).astype(np.float32))


def test_incomplete_or_foreign_files_are_not_used(cache):
    entry, _ = fill(cache)
    with h5py.File(entry.path, "r+") as f:
        f.attrs["complete"] = False
    assert "not marked complete" in cache.verify(entry.path)[0]
    assert fill(cache)[1].calls == 1

    other, _ = fill(cache, make_key(split="validation"))
    target = cache.path_for(make_key())
    os.replace(other.path, target)  # a file under the wrong name: its stored key decides
    again, producer = fill(cache)
    assert producer.calls == 1 and again.key == make_key() and cache.verify(target) == []


def test_old_format_version_is_rebuilt(cache):
    entry, _ = fill(cache)
    with h5py.File(entry.path, "r+") as f:
        meta = json.loads(f.attrs["abawbench"])
        f.attrs["abawbench"] = json.dumps({**meta, "format_version": 0})
    assert "format version 0" in cache.verify(entry.path)[0]
    _, producer = fill(cache)
    assert producer.calls == 1


def test_other_sample_ids_under_the_same_key_rebuild(cache):
    fill(cache)
    producer = Producer(features())
    entry = cache.get_or_create(make_key(), [f"x{i}" for i in range(ROWS)], DIM, producer)
    assert producer.calls == 1 and entry.sample_ids[0] == "x0"


def test_corrupt_sample_ids_are_detected_with_or_without_the_callers_ids(cache):
    entry, _ = fill(cache)
    with h5py.File(entry.path, "r") as f:
        ids_offset = f["sample_ids"].id.get_offset()
    flip_byte(entry.path, ids_offset + 3)  # "video0/..." becomes another, valid-looking id
    assert "sample ids fail their checksum" in cache.verify(entry.path)[0]
    _, producer = fill(cache)
    assert producer.calls == 1  # rebuilt


def test_sample_ids_with_line_breaks_are_refused(cache):
    bad = ids()
    bad[7] = "video1/\n7.jpg"
    with pytest.raises(CacheError, match="row 7 contains a line break"):
        cache.get_or_create(make_key(), bad, DIM, Producer(features()))


def test_chunk_checksum_sees_small_changes():
    data = np.random.default_rng(1).standard_normal((700, 24)).astype(np.float16)
    base = chunk_checksum(data)
    assert chunk_checksum(data.copy()) == base
    words = data.reshape(-1).view(np.uint64).copy()
    variants = {
        "one bit": lambda w: w.__setitem__(3, w[3] ^ np.uint64(1)),
        "swap two words": lambda w: w.__setitem__([0, 1], w[[1, 0]]),
        "swap 4 KiB blocks": lambda w: w.__setitem__(slice(0, 1024), np.roll(w[:1024], 512)),
        "zero tail": lambda w: w.__setitem__(slice(-5, None), 0),
    }
    for name, change in variants.items():
        changed = words.copy()
        change(changed)
        assert chunk_checksum(changed) != base, name
    assert chunk_checksum(data[:-1]) != base


# --------------------------------------------------------------------------- reading threads


def bad_rows(chunk: int) -> BadRows:
    return BadRows(chunk * 64, chunk * 64 + 64, "fail their checksum")


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_chunks_are_shared_out_once_each_and_the_first_bad_rows_are_named(threads):
    """Every chunk is done exactly once whatever the number of threads; with two bad chunks in
    different threads, the lower is named even when the higher fails first (its thread is
    held on its previous chunk until then) and the lower one's thread must go on to find it."""
    done: list[int] = []

    def make_worker():
        return done.append

    for_each_chunk(20, make_worker, threads=threads)
    assert sorted(done) == list(range(20))

    chunk_15_failed = threading.Event()

    def make_failing_worker():
        def work(chunk: int) -> None:
            if threads > 1 and chunk == 4 - threads:
                assert chunk_15_failed.wait(10)
            if chunk == 15:
                chunk_15_failed.set()
            if chunk in (4, 15):
                raise bad_rows(chunk)

        return work

    with pytest.raises(BadRows, match=r"rows 256\.\.319"):
        for_each_chunk(20, make_failing_worker, threads=threads)


def test_reading_threads_share_the_work_and_pass_on_any_error():
    """Chunks really are done by several threads, and anything a thread raises (not only bad
    rows) reaches the caller."""
    workers = set()
    for_each_chunk(20, lambda: lambda chunk: workers.add(threading.current_thread()), threads=3)
    assert len(workers) == 3

    def make_worker():
        def work(chunk: int) -> None:
            if chunk == 7:
                raise MemoryError("simulated")

        return work

    with pytest.raises(MemoryError, match="simulated"):
        for_each_chunk(20, make_worker, threads=3)


def test_a_read_that_cannot_start_all_its_threads_does_their_chunks_itself(monkeypatch):
    """No thread to be had (a pids limit) costs speed, not the read: the calling thread does
    the chunks of the thread that did not start; the one that did is joined before returning
    (the caller closes the file next)."""
    started = []
    real_start = threading.Thread.start

    def start_one_then_fail(thread):
        if started:
            raise RuntimeError("can't start new thread")
        started.append(thread)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start_one_then_fail)
    done: list[int] = []
    for_each_chunk(20, lambda: done.append, threads=3)
    assert sorted(done) == list(range(20))
    assert len(started) == 1 and not started[0].is_alive()


def test_interrupts_come_first_then_other_errors_then_the_first_bad_rows():
    def failing(errors: dict[int, BaseException]):
        barrier = threading.Barrier(len(errors))

        def make_worker():
            def work(chunk: int) -> None:
                barrier.wait(10)  # every thread is inside its first chunk before any fails
                raise errors[chunk]

            return work

        return make_worker

    mixed = {0: bad_rows(0), 1: UnicodeDecodeError("utf-8", b"", 5, 6, "no row"), 2: bad_rows(2),
             3: KeyboardInterrupt()}
    with pytest.raises(KeyboardInterrupt):
        for_each_chunk(4, failing(mixed), threads=4)
    with pytest.raises(UnicodeDecodeError):
        for_each_chunk(3, failing({i: mixed[i] for i in range(3)}), threads=3)
    with pytest.raises(BadRows, match=r"rows 0\.\.63"):
        for_each_chunk(3, failing({i: bad_rows(i) for i in range(3)}), threads=3)


# --------------------------------------------------------------------------- torch


def test_dataloader_workers_read_every_row(cache):
    import torch  # imported here so that the subprocess children above stay torch-free

    entry, producer = fill(cache)
    dataset = entry.torch_dataset()
    assert len(dataset) == ROWS and dataset[3][0] == 3  # parent opens a handle before forking
    loader = torch.utils.data.DataLoader(dataset, batch_size=50, num_workers=2, shuffle=False)
    rows, feats = zip(*loader)
    np.testing.assert_array_equal(torch.cat(rows).numpy(), np.arange(ROWS))
    np.testing.assert_array_equal(torch.cat(feats).numpy(), entry.read())
    clone = pickle.loads(pickle.dumps(dataset))
    assert torch.equal(clone[7][1], dataset[7][1])
    with pytest.raises(IndexError):
        dataset[ROWS]
    flip_byte(entry.path, data_offset(entry.path) + 100)
    rebuilt = entry.torch_dataset()  # verified before it serves a row: rebuilt, not served corrupt
    assert producer.calls == 2
    np.testing.assert_array_equal(rebuilt[70][1].numpy(), entry.read()[70])


# --------------------------------------------------------------------------- CLI


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_ls_verify_clear(cache, capsys):
    root = str(cache.root)
    assert run_cli(capsys, "cache", "ls", "--cache-dir", root)[1].startswith("no cached features")
    fill(cache)
    other, _ = fill(cache, make_key(backbone="timm:vit_tiny", split="validation"))

    code, out, _ = run_cli(capsys, "cache", "ls", "--cache-dir", root)
    assert code == 0 and "timm:resnet18" in out and "timm:vit_tiny" in out and "300" in out
    listed = json.loads(run_cli(capsys, "cache", "ls", "--json", "--cache-dir", root)[1])
    assert {e["key"]["split"] for e in listed} == {"train", "validation"}
    assert all(e["rows"] == ROWS and e["dim"] == DIM and e["problem"] is None for e in listed)

    assert run_cli(capsys, "cache", "verify", "--cache-dir", root)[0] == 0
    flip_byte(other.path, data_offset(other.path) + 8)
    code, out, _ = run_cli(capsys, "cache", "verify", "--cache-dir", root)
    assert code == 2 and "BAD" in out and "1 ok, 1 bad" in out

    code, _, err = run_cli(capsys, "cache", "clear", "--cache-dir", root)
    assert code == 2 and "--backbone NAME, --pixel-packs, --bad or --all" in err
    code, _, err = run_cli(capsys, "cache", "clear", "--all", "--cache-dir", root)
    assert code == 2 and "--yes" in err and len(cache.entries()) == 2
    code, out, _ = run_cli(capsys, "cache", "clear", "--backbone", "timm:vit_tiny", "--yes",
                           "--cache-dir", root)
    assert code == 0 and [e.key.backbone for e in cache.entries()] == ["timm:resnet18"]
    assert run_cli(capsys, "cache", "clear", "--all", "--yes", "--cache-dir", root)[0] == 0
    assert cache.entries() == []


def test_cli_clear_bad_removes_only_what_fails_verification(cache, capsys):
    """Corrupt files and files of another cache format (which never hit again, under their
    old names) go; good ones stay, whatever their backbone."""
    root = str(cache.root)
    good, _ = fill(cache)
    corrupt, _ = fill(cache, make_key(backbone="timm:vit_tiny"))
    old_format, _ = fill(cache, make_key(split="validation"))
    flip_byte(corrupt.path, data_offset(corrupt.path) + 8)
    with h5py.File(old_format.path, "r+") as f:
        f.attrs["abawbench"] = json.dumps({**json.loads(f.attrs["abawbench"]), "format_version": 1})
    code, out, _ = run_cli(capsys, "cache", "clear", "--bad", "--backbone", "timm:resnet18", "--yes",
                           "--cache-dir", root)
    assert code == 0 and "removed 1 file(s)" in out
    assert not old_format.path.exists() and corrupt.path.exists() and good.path.exists()
    code, out, _ = run_cli(capsys, "cache", "clear", "--bad", "--yes", "--cache-dir", root)
    assert code == 0 and "removed 1 file(s)" in out
    assert not corrupt.path.exists() and good.path.exists()
    np.testing.assert_array_equal(good.read(), features().astype(np.float16).astype(np.float32))


def test_cli_defaults_to_the_environment_cache(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ABAWBENCH_CACHE", str(tmp_path / "envcache"))
    fill(FeatureCache(tmp_path / "envcache"))
    code, out, _ = run_cli(capsys, "cache", "ls")
    assert code == 0 and "timm:resnet18" in out


def make_pack(root: Path):
    from abawbench.features.pixel_packs import PixelPackStore, pack_key

    key = pack_key({"input_size": (3, 2, 2), "interpolation": "bilinear", "crop_pct": 1.0}, "fp-1", "train")
    return PixelPackStore(root).get_or_create(key, ["a.jpg", "b.jpg"], 12,
                                              lambda w: w.write(0, np.ones((2, 12), np.uint8)))


def test_cli_lists_pixel_packs_as_pixel_packs_and_clears_them_on_their_own(cache, capsys):
    root = str(cache.root)
    fill(cache)
    pack = make_pack(cache.root)
    code, out, _ = run_cli(capsys, "cache", "ls", "--cache-dir", root)
    features_table, packs_table = out.split("pixel packs in")
    assert code == 0 and "timm:resnet18" in features_table and "pixel" not in features_table
    assert "2x2-bilinear-crop1-center" in packs_table and "train" in packs_table
    listed = json.loads(run_cli(capsys, "cache", "ls", "--json", "--cache-dir", root)[1])
    assert sorted(e["kind"] for e in listed) == ["features", "pixel-pack"]
    assert run_cli(capsys, "cache", "verify", "--cache-dir", root)[1].endswith("2 ok, 0 bad\n")

    code, out, _ = run_cli(capsys, "cache", "clear", "--backbone", "pixels", "--yes", "--cache-dir", root)
    assert code == 0 and "removed 0 file(s)" in out and pack.path.exists()  # a pack is no backbone's
    code, out, _ = run_cli(capsys, "cache", "clear", "--pixel-packs", "--yes", "--cache-dir", root)
    assert code == 0 and "removed 1 file(s)" in out and not pack.path.exists()
    assert [e.key.backbone for e in cache.entries()] == ["timm:resnet18"]
    make_pack(cache.root)
    assert run_cli(capsys, "cache", "clear", "--all", "--yes", "--cache-dir", root)[1] == "removed 2 file(s) and 2 lock file(s)\n"


def test_a_pixel_pack_among_the_features_is_never_taken_for_features(cache, capsys):
    """As an older abawbench kept packs (under the backbone name "pixels"): such a file is
    listed with its problem, fails verification and goes with ``clear --bad``."""
    import shutil

    pack = make_pack(cache.root)
    stray = cache.folder / "pixels" / pack.path.name
    stray.parent.mkdir(parents=True)
    shutil.copy(pack.path, stray)
    [entry] = cache.entries()
    assert entry.key is None and "holds uint8 rows, not the float16 rows" in entry.problem
    assert cache.verify(stray)
    code, out, _ = run_cli(capsys, "cache", "clear", "--bad", "--yes", "--cache-dir", str(cache.root))
    assert code == 0 and "removed 1 file(s)" in out and not stray.exists() and pack.path.exists()


def test_cli_reports_unfinished_writes_and_clears_those_no_writer_holds(cache, capsys):
    from filelock import FileLock

    from abawbench.atomic import temporary_name

    root = str(cache.root)
    entry, _ = fill(cache)
    orphan = temporary_name(cache.path_for(make_key(split="test")))  # a writer killed on a first extraction
    beside = temporary_name(entry.path)  # a writer killed while rebuilding an entry
    for path in (orphan, beside):
        path.write_bytes(b"partial")
    assert cache.unfinished() == sorted([orphan, beside]) and len(cache.entries()) == 1
    assert "2 unfinished write(s)" in run_cli(capsys, "cache", "ls", "--cache-dir", root)[1]
    with FileLock(f"{cache.path_for(make_key(split='test'))}.lock"):  # that write is still running
        code, out, err = run_cli(capsys, "cache", "clear", "--bad", "--yes", "--cache-dir", root)
    assert code == 0 and "removed 1 file(s)" in out and "busy" in err
    assert cache.unfinished() == [orphan] and entry.path.exists()
    run_cli(capsys, "cache", "clear", "--bad", "--yes", "--cache-dir", root)
    assert cache.unfinished() == [] and entry.path.exists()


def test_cli_shows_every_leftover_and_clear_all_removes_them(cache, capsys):
    """Temporaries of killed writers (in this cache's naming or another's) and lock files of
    entries that do not exist are listed by ls and verify, path by path, and go with clear --all."""
    from abawbench.atomic import temporary_name

    root = str(cache.root)
    entry, _ = fill(cache)
    orphan = temporary_name(cache.path_for(make_key(split="test")))
    foreign = cache.path_for(make_key(split="validation")).with_name("validation-x.h5.tmp-1234")
    lock = cache.path_for(make_key(split="validation")).with_name("validation-y.h5.lock")
    for path in (orphan, foreign, lock):
        path.write_bytes(b"partial")
    assert cache.leftovers() == sorted([orphan, foreign, lock])
    for action in ("ls", "verify"):
        code, out, _ = run_cli(capsys, "cache", action, "--cache-dir", root)
        assert code == 0 and all(str(path) in out for path in (orphan, foreign, lock)), out
    code, out, _ = run_cli(capsys, "cache", "clear", "--all", "--yes", "--cache-dir", root)
    assert code == 0 and "removed 3 file(s) and " in out
    assert not [p for p in cache.root.rglob("*") if p.is_file()] and not entry.path.exists()


def test_an_entry_replaced_for_other_sample_ids_is_never_read_as_the_first(cache):
    """A process that found an entry for ids X must not serve the rows of a file that another
    process, asking the same key for ids Y, wrote over it meanwhile."""
    data = features()
    found = cache.get_or_create(make_key(), ids(), DIM, Producer(data))
    other_ids = [f"other{i:05d}.jpg" for i in range(ROWS)]
    cache.get_or_create(make_key(), other_ids, DIM, Producer(data[::-1].copy())).read()
    try:
        rows = found.read()
    except CacheError:
        return  # refused: fine
    # or rebuilt for the ids it was found for: the rows are the first producer's
    np.testing.assert_array_equal(rows, data.astype(np.float16).astype(np.float32))
