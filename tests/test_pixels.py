"""Pixel packs: decoded eval pixels stored once per geometry and reused by every backbone that
shares it, with the same features as decoding the files and the feature cache's integrity."""

from __future__ import annotations

import logging
import os
import threading

import numpy as np
import pytest
import torch
from filelock import FileLock

import abawbench.features.extract
import abawbench.features.preprocess
import abawbench.training.finetune
from abawbench.errors import CacheError
from abawbench.features.cached import CachedFeatures
from abawbench.features.entry import EntryWriter
from abawbench.features.pixel_packs import PixelPackStore, pack_key, with_pixel_pack
from abawbench.features.store import FeatureCache
from abawbench.run.plan import prepare_data
from abawbench.run.runner import Runner
from abawbench.specs import ModelOptions

from test_cache import data_offset, flip_byte
from test_feature_identity import torchvision_without_image_codecs
from test_protocol import _config, extract_into_sink, lsd_tree, tiny_host, train_split  # noqa: F401 - fixtures



@pytest.fixture
def split(tmp_path, lsd_tree, tiny_host):  # noqa: F811 - fixtures
    return train_split(tmp_path, lsd_tree, tiny_host)


def extract(backbone, index, cache=None, batch_size=16):
    sink = extract_into_sink(backbone, index, batch_size=batch_size,
                             pixel_pack=None if cache is None else (cache, "train"))
    assert np.isfinite(sink).all()
    return sink


def tiny(host, seed=0):
    return host.models.get("tiny").build(ModelOptions(extra={"seed": seed}))


def count_decodes(monkeypatch) -> list[int]:
    calls = [0]
    real = abawbench.features.preprocess.load_image

    def counting(path):
        calls[0] += 1
        return real(path)

    monkeypatch.setattr(abawbench.features.extract, "load_image", counting)
    return calls


def test_pack_gives_the_features_of_the_files_and_later_backbones_decode_nothing(split, tiny_host, tmp_path,
                                                                                 monkeypatch):
    cache = PixelPackStore(tmp_path / "cache")
    decodes = count_decodes(monkeypatch)
    from_files = extract(tiny(tiny_host), split)
    assert decodes[0] == len(split)
    first = extract(tiny(tiny_host), split, cache, batch_size=7)  # writes the pack while extracting
    assert decodes[0] == 2 * len(split)  # one decode, not two
    other_backbone = tiny(tiny_host, seed=1)  # same geometry, other weights
    second = extract(other_backbone, split, cache, batch_size=5)
    assert decodes[0] == 2 * len(split)  # read from the pack
    assert np.array_equal(first, from_files)
    assert np.array_equal(second, extract(other_backbone, split))
    [pack] = cache.entries()
    assert pack.num_rows == len(split) and pack.row_dim == 3 * 32 * 32
    assert FeatureCache(tmp_path / "cache").entries() == []  # packs are not features


def test_pack_key_is_the_geometry_not_the_normalisation():
    config = {"input_size": (3, 32, 32), "interpolation": "bilinear", "crop_pct": 1.0,
              "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    key = pack_key(config, "fp", "train")
    assert pack_key({**config, "mean": (0.1, 0.2, 0.3), "std": (1, 1, 1)}, "fp", "train") == key
    for changed in ({"input_size": (3, 64, 64)}, {"interpolation": "bicubic"}, {"crop_pct": 0.875},
                    {"crop_mode": "squash"}):
        assert pack_key({**config, **changed}, "fp", "train") != key, changed
    assert pack_key(config, "other", "train") != key and pack_key(config, "fp", "validation") != key


def test_pack_key_names_the_jpeg_decoder(monkeypatch):
    """Pixels decoded by Pillow are not served where torchvision's decoder is chosen (and the
    other way round): features keyed on the decoder must not come from another's pack."""
    config = {"input_size": (3, 32, 32), "interpolation": "bilinear", "crop_pct": 1.0}
    fast = pack_key(config, "fp", "train")
    with torchvision_without_image_codecs(monkeypatch):
        pillow = pack_key(config, "fp", "train")
    assert pillow != fast and pillow.decoder["jpeg"].startswith("Pillow")


def fake_batches(rows=50, shape=(3, 4, 5), batch=8, fail_at=None, calls=None):
    images = np.random.default_rng(0).integers(0, 256, size=(rows, *shape), dtype=np.uint8)

    def decode(first_row):
        if calls is not None:
            calls.append(first_row)
        for start in range(first_row, rows, batch):
            if fail_at is not None and start >= fail_at:
                raise RuntimeError("decoder failed")
            yield start, torch.from_numpy(images[start:start + batch].copy())

    return images, decode


def collect(into: list):
    def consume(batches):
        for start, images in batches:
            into.append((start, images.clone()))
    return consume


def test_with_pixel_pack_streams_verified_batches_and_stores_nothing_on_failure(tmp_path):
    store = PixelPackStore(tmp_path / "cache", chunk_bytes=3 * 60)  # 3 rows of 60 bytes per chunk
    key = pack_key({"input_size": (3, 4, 5), "interpolation": "bilinear", "crop_pct": 1.0}, "fp", "train")
    ids = [f"img{i}.jpg" for i in range(50)]
    images, decode = fake_batches()
    _, failing = fake_batches(fail_at=24)
    with pytest.raises(RuntimeError, match="decoder failed"):
        with_pixel_pack(store, key, ids, failing, collect([]), batch_size=8)
    assert store.entries() == [] and store.unfinished() == []  # a half-decoded split is never stored
    seen: list = []
    with_pixel_pack(store, key, ids, decode, collect(seen), batch_size=8)
    assert [s for s, _ in seen] == list(range(0, 50, 8))
    read_back: list = []
    with_pixel_pack(store, key, ids, lambda row: pytest.fail("must not decode"), collect(read_back),
                    batch_size=7)  # batches that cut across the 3-row chunks
    assert [s for s, _ in read_back] == list(range(0, 50, 7))
    assert np.array_equal(torch.cat([b for _, b in read_back]).numpy(), images)
    # A chunk corrupted after the pack was checked: nothing of it is handed out.
    entry = store.get_or_create(key, ids, 60, lambda writer: pytest.fail("the pack exists"))
    flip_byte(entry.path, data_offset(entry.path, 5) + 10)  # chunk 5: rows 15..17
    handed: list = []
    with pytest.raises(CacheError, match=r"rows 15\.\.17 fail their checksum"):
        for start, batch in entry.iter_batches(4):
            handed.append((start, batch))
    assert handed and sum(len(b) for _, b in handed) <= 15
    assert not entry.path.exists()  # removed, to be rebuilt by the next extraction
    with_pixel_pack(store, key, ids, decode, collect([]), batch_size=8)  # rebuilt
    flip_byte(entry.path, data_offset(entry.path, 5) + 10)
    # Through with_pixel_pack the damage costs a decode of the rest, never a wrong row.
    calls: list = []
    _, decode_rest = fake_batches(calls=calls)
    mended: list = []
    with_pixel_pack(store, key, ids, decode_rest, collect(mended), batch_size=4)
    assert calls == [12]  # rows 0..11 came from the pack, the batch holding row 15 was not handed out
    assert [s for s, _ in mended][:3] == [0, 4, 8] and mended[3][0] == 12
    assert np.array_equal(torch.cat([b for _, b in mended]).numpy(), images)
    assert not entry.path.exists()


def test_pixel_rows_are_not_features(tmp_path):
    store = PixelPackStore(tmp_path / "cache")
    key = pack_key({"input_size": (3, 2, 2), "interpolation": "bilinear", "crop_pct": 1.0}, "fp", "train")
    with pytest.raises(CacheError, match="pixel rows must be uint8"):
        store.get_or_create(key, ["a", "b"], 12, lambda w: w.write(0, np.zeros((2, 12), np.float32)))
    pack = store.get_or_create(key, ["a", "b"], 12, lambda w: w.write(0, np.ones((2, 12), np.uint8)))
    assert not isinstance(pack, CachedFeatures) and not hasattr(pack, "read")  # rows to stream, not features
    assert pack.path.is_relative_to(tmp_path / "cache" / "pixel-packs")
    assert FeatureCache(tmp_path / "cache").entries() == []
    assert "pixel-pack" in key.canonical().values()  # no features key can ever digest like it


def test_run_with_pixel_cache_scores_the_same(tmp_path, lsd_tree, tiny_host):  # noqa: F811
    plain = Runner(_config(tmp_path, lsd_tree, output=tmp_path / "a", cache_dir=tmp_path / "c1"),
                   host=tiny_host, progress=False).run()
    packed = Runner(_config(tmp_path, lsd_tree, output=tmp_path / "b", cache_dir=tmp_path / "c2",
                            protocol={"epochs": 3, "batch_size": 16, "bootstrap": 20, "pixel_cache": True}),
                    host=tiny_host, progress=False).run()
    a, b = plain.results[0], packed.results[0]
    assert b.status == "completed", b.error
    assert a.entry == b.entry  # the pixel cache is not a setting that changes scores
    assert a.primary == b.primary and a.per_class == b.per_class and a.cache_keys == b.cache_keys
    packs = PixelPackStore(tmp_path / "c2").entries()
    assert sorted(e.key.split for e in packs) == sorted(b.cache_keys)  # one pack per extracted split
    features = [FeatureCache(tmp_path / root).entries() for root in ("c1", "c2")]
    assert [e.path.name for e in features[0]] == [e.path.name for e in features[1]]  # the same features


def test_a_pack_written_by_another_process_meanwhile_is_read_not_decoded(tmp_path, caplog):
    """The first look misses and the reader waits for the key's lock, held by another writer;
    once that writer has stored the pack, get_or_create returns it without calling produce,
    and the batches must still reach the consumer (from the pack)."""
    store = PixelPackStore(tmp_path / "cache")
    key = pack_key({"input_size": (3, 4, 5), "interpolation": "bilinear", "crop_pct": 1.0}, "fp", "train")
    ids = [f"img{i}.jpg" for i in range(50)]
    images, decode = fake_batches()
    seen: list = []
    problems: list = []
    waiting = threading.Event()

    def read_pack() -> None:
        try:
            with_pixel_pack(store, key, ids, lambda row: problems.append("decoded"), collect(seen), batch_size=16)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            problems.append(exc)

    reader = threading.Thread(target=read_pack)

    class WaitingForTheLock(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if threading.current_thread() is reader and "not cached" in record.getMessage():
                waiting.set()

    caplog.set_level(logging.DEBUG, logger="abawbench.features.store")
    handler = WaitingForTheLock()
    logging.getLogger("abawbench.features.store").addHandler(handler)
    try:
        with FileLock(f"{store.path_for(key)}.lock"):  # the other writer is at work
            reader.start()
            assert waiting.wait(30), "the reader never missed"
            other = PixelPackStore(tmp_path / "elsewhere")
            with_pixel_pack(other, key, ids, decode, collect([]), batch_size=8)
            os.replace(other.path_for(key), store.path_for(key))  # ... and stores the pack
        reader.join(30)
    finally:
        logging.getLogger("abawbench.features.store").removeHandler(handler)
    assert not reader.is_alive() and problems == []
    assert np.array_equal(torch.cat([b for _, b in seen]).numpy(), images)


def test_finetune_with_pixel_cache_decodes_validation_once_and_predicts_the_same_every_epoch(
        tmp_path, lsd_tree, tiny_host, monkeypatch):  # noqa: F811
    """Flip augmentation draws from torch's global generator (no workers): an eval pass that
    moved that stream would make epoch 2 on differ between decoding and reading a pack."""
    def finetune_config(name, pixel_cache):
        return _config(tmp_path, lsd_tree, output=tmp_path / name, cache_dir=tmp_path / f"cache-{name}",
                       protocol={"name": "finetune", "epochs": 3, "batch_size": 16, "bootstrap": 0,
                                 "augmentation": "flip", "pixel_cache": pixel_cache,
                                 # validation predicted every epoch: the pass a pack saves most on
                                 "selection": "validation"})

    real_predict = abawbench.training.finetune.predict_images
    calls: dict[str, list] = {"plain": [], "packed": []}

    def run(name, pixel_cache):
        def recording(*args, **kwargs):
            out = real_predict(*args, **kwargs)
            calls[name].append({task: value.clone() for task, value in out.items()})
            return out

        monkeypatch.setattr(abawbench.training.finetune, "predict_images", recording)
        return Runner(finetune_config(name, pixel_cache), host=tiny_host, progress=False).run().results[0]

    plain = run("plain", False)
    decodes = count_decodes(monkeypatch)
    packed = run("packed", True)
    assert packed.status == "completed", packed.error
    assert len(calls["packed"]) == len(calls["plain"]) == 4  # validation after each of 3 epochs, then test
    for epoch, (a, b) in enumerate(zip(calls["plain"], calls["packed"]), start=1):
        assert all(torch.equal(a[task], b[task]) for task in a), f"predictions differ after epoch {epoch}"
    assert plain.entry == packed.entry and plain.primary == packed.primary and plain.per_class == packed.per_class
    splits = prepare_data(tiny_host, finetune_config("packed", True), tiny_host.tracks.get("lsd"),
                          tmp_path / "cache-packed").splits
    # training decodes every epoch (it augments; whole batches of 16 only), validation and test
    # are decoded once, into their packs (without packs: validation 3 times)
    trained_per_epoch = len(splits["train"]) // 16 * 16
    assert decodes[0] == 3 * trained_per_epoch + len(splits["validation"]) + len(splits["test"])


def test_a_pack_that_cannot_be_written_is_skipped_and_every_batch_still_arrives(tmp_path, monkeypatch, caplog):
    store = PixelPackStore(tmp_path / "cache")
    key = pack_key({"input_size": (3, 4, 5), "interpolation": "bilinear", "crop_pct": 1.0}, "fp", "train")
    ids = [f"img{i}.jpg" for i in range(50)]
    images, decode = fake_batches()
    real_write = EntryWriter.write

    def disk_full_at_row_16(self, start_row, rows):
        if start_row >= 16:
            raise OSError(28, "No space left on device")
        return real_write(self, start_row, rows)

    with monkeypatch.context() as patched:
        patched.setattr(EntryWriter, "write", disk_full_at_row_16)
        seen: list = []
        with_pixel_pack(store, key, ids, decode, collect(seen), batch_size=8)
    assert np.array_equal(torch.cat([b for _, b in seen]).numpy(), images)
    assert "not stored" in caplog.text and "No space left" in caplog.text
    assert store.entries() == [] and store.unfinished() == []
    # a store that cannot give a pack at all (here: another writer holds its lock) decodes without one
    seen.clear()
    with FileLock(f"{store.path_for(key)}.lock"):
        assert not with_pixel_pack(PixelPackStore(tmp_path / "cache", lock_timeout=0), key, ids, decode,
                                   collect(seen), batch_size=8)
    assert np.array_equal(torch.cat([b for _, b in seen]).numpy(), images)
    assert "held the cache lock" in caplog.text


def test_an_error_of_the_consumer_is_not_mistaken_for_a_pack_problem(tmp_path):
    store = PixelPackStore(tmp_path / "cache")
    key = pack_key({"input_size": (3, 4, 5), "interpolation": "bilinear", "crop_pct": 1.0}, "fp", "train")
    _, decode = fake_batches()

    def failing_consumer(batches):
        for start, _images in batches:
            if start >= 16:
                raise CacheError("features of row 17 are NaN")

    with pytest.raises(CacheError, match="NaN"):
        with_pixel_pack(store, key, [f"img{i}.jpg" for i in range(50)], decode, failing_consumer,
                        batch_size=8)
    assert store.entries() == []


def test_damaged_pack_with_loader_workers_gives_the_features_of_the_files(split, tiny_host, tmp_path):
    store = PixelPackStore(tmp_path / "cache", chunk_bytes=10 * 3 * 32 * 32)  # 10 images per chunk
    backbone = tiny(tiny_host)
    expected = extract(backbone, split)
    extract(backbone, split, store)  # writes the pack
    [pack] = store.entries()
    flip_byte(pack.path, data_offset(pack.path, 3) + 100)
    sink = extract_into_sink(backbone, split, batch_size=16, num_workers=2, pixel_pack=(store, "train"))
    assert np.array_equal(sink, expected)
    assert not pack.path.exists()


def test_rerun_with_only_the_pixel_cache_changed_reuses_completed_results(tmp_path, lsd_tree, tiny_host):  # noqa: F811
    first = Runner(_config(tmp_path, lsd_tree), host=tiny_host, progress=False).run()
    assert first.results and not first.skipped_results
    again = Runner(_config(tmp_path, lsd_tree, protocol={"epochs": 3, "batch_size": 16, "bootstrap": 20,
                                                         "pixel_cache": True, "num_workers": 1}),
                   host=tiny_host, progress=False).run()
    assert not again.results and len(again.skipped_results) == len(first.results)
    changed = Runner(_config(tmp_path, lsd_tree, protocol={"epochs": 4, "batch_size": 16, "bootstrap": 20}),
                     host=tiny_host, progress=False).run()
    assert changed.results  # a setting that matters is run, not reused


def test_worker_count_matters_for_finetune_reuse_but_not_for_the_entry():
    from abawbench.config import ProtocolConfig
    from abawbench.results import EntrySpecModel

    def spec(**protocol):
        return EntrySpecModel(model="tiny", loss="cross-entropy", protocol=ProtocolConfig(**protocol))

    probe, finetune = {"name": "linear-probe"}, {"name": "finetune", "augmentation": "flip"}
    assert spec(**probe).same_run_as(spec(**probe, num_workers=2, pixel_cache=True))
    assert spec(**finetune).same_run_as(spec(**finetune, pixel_cache=True))
    assert not spec(**finetune).same_run_as(spec(**finetune, num_workers=2))  # workers seed augmentation
    assert spec(**finetune).entry_id == spec(**finetune, num_workers=2, pixel_cache=True).entry_id
    assert not spec(**probe).same_run_as(spec(**probe, bootstrap=50))  # intervals change
