"""The official ABAW4 readers and submission files (the ``abaw4`` plugin), and the core's
whole-dataset check, on tiny trees written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from abawbench.data.check import check_dataset
from abawbench.errors import ConfigError, DataFormatError
from abawbench.specs import DatasetSpec, ReadOptions
from abawbench_builtins.abaw4.reader import read_split, scan_split
from abawbench_builtins.abaw4.submission import (
    read_lsd_submission,
    read_mtl_submission,
    write_lsd_submission,
    write_mtl_submission,
)

STRICT = ReadOptions()
SKIP = ReadOptions(skip_bad=True)

MTL_HEADER = "image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"
AUS_OK = ",".join(["0", "1"] * 6)
AUS_MISSING = ",".join(["-1"] * 12)


def tiny_jpeg() -> bytes:
    """A real (decodable) image: ``--skip-bad`` reads and ``data check`` decode every image."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="JPEG")
    return buffer.getvalue()


JPEG = tiny_jpeg()


@pytest.fixture
def mtl(host):
    return host.tracks.get("mtl")


@pytest.fixture
def lsd(host):
    return host.tracks.get("lsd")


@pytest.fixture
def abaw4(host):
    return host.datasets.get("abaw4")


def write_mtl(root: Path, lines: list[str], split: str = "train", images: bool = True) -> Path:
    """An MTL annotation file with the given data lines, and (optionally) their images."""
    name = {"train": "training_set_annotations.txt", "validation": "validation_set_annotations.txt"}[split]
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text("\n".join([MTL_HEADER, *lines]) + "\n", encoding="utf-8")
    if images:
        for line in lines:
            image = line.split(",")[0]
            if image and ".." not in image and not image.startswith("/"):
                path = root / "cropped_aligned" / image
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(JPEG)
    return root / name


def write_lsd(root: Path, folders: dict[str, int], split: str = "train") -> None:
    base = root / {"train": "training_set_synthetic_images", "validation": "validation_set_real_images"}[split]
    for folder, count in folders.items():
        (base / folder).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            (base / folder / f"{k}.jpg").write_bytes(JPEG)


GOOD = [
    f"v1/00001.jpg,0.5,-0.25,4,{AUS_OK}",
    f"v1/00002.jpg,-5,-5,-1,{AUS_MISSING}",
    f"v2/00001.jpg,0.1,-5,7,{AUS_OK}",  # one of V/A missing: no VA label
    f"v2/00002.jpg,1,-1,0,0,0,0,0,0,0,0,0,0,0,0,-1",  # one AU missing: no AU label
]


# --------------------------------------------------------------------------- mtl


def test_mtl_labels_and_sentinels(tmp_path, mtl):
    write_mtl(tmp_path, GOOD)
    index = read_split(tmp_path, mtl, "train", STRICT)
    assert index.paths == ["cropped_aligned/v1/00001.jpg", "cropped_aligned/v1/00002.jpg",
                           "cropped_aligned/v2/00001.jpg", "cropped_aligned/v2/00002.jpg"]
    assert index.absolute_path(0).is_file()
    va, expr, au = index.labels["va"], index.labels["expr"], index.labels["au"]
    assert va.mask.tolist() == [True, False, False, True]
    np.testing.assert_allclose(va.values[0], [0.5, -0.25])
    assert va.values.dtype == np.float32 and (va.values[~va.mask] == 0).all()
    assert expr.mask.tolist() == [True, False, True, True]
    assert expr.values.dtype == np.int64 and expr.values[expr.mask].tolist() == [4, 7, 0]
    assert au.mask.tolist() == [True, False, True, False]
    assert au.values.shape == (4, 12) and au.values[0].tolist() == [0, 1] * 6
    assert index.skipped == 0 and index.duplicates == 0 and len(index.fingerprint) == 32


def test_mtl_validation_split_and_test_release(tmp_path, mtl):
    write_mtl(tmp_path, GOOD, split="validation")
    assert len(read_split(tmp_path, mtl, "validation", STRICT)) == 4
    (tmp_path / "MTL_Challenge_test_set_release.txt").write_text(
        "image,valence,arousal,expression,aus\nv1/00001.jpg\nv2/00001.jpg,,,,\n", encoding="utf-8")
    test = read_split(tmp_path, mtl, "test", STRICT)
    assert test.paths == ["cropped_aligned/v1/00001.jpg", "cropped_aligned/v2/00001.jpg"]
    assert test.labels == {}
    release = tmp_path / "MTL_Challenge_test_set_release.txt"
    release.write_text(release.read_text(encoding="utf-8") + "v1/00002.jpg,0.1,0.2,3\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=rf"{release}:4: values after the image name"):
        read_split(tmp_path, mtl, "test", STRICT)


BAD_ROWS = [
    (f"v1/00003.jpg,0.5,0.5,4,{AUS_OK},1", "expected 16 columns, found 17"),
    (f"v1/00003.jpg,0.5,0.5,4", "expected 16 columns, found 4"),
    (f"v1/00003.jpg,abc,0.5,4,{AUS_OK}", "non-numeric valence 'abc'"),
    (f"v1/00003.jpg,0.5,nan,4,{AUS_OK}", "non-numeric arousal 'nan'"),
    (f"v1/00003.jpg,1.5,0.5,4,{AUS_OK}", "out-of-range valence '1.5'"),
    (f"v1/00003.jpg,0.5,-2,4,{AUS_OK}", "out-of-range arousal '-2'"),
    (f"v1/00003.jpg,0.5,0.5,8,{AUS_OK}", "out-of-range expression '8'"),
    (f"v1/00003.jpg,0.5,0.5,-2,{AUS_OK}", "out-of-range expression '-2'"),
    (f"v1/00003.jpg,0.5,0.5,2.5,{AUS_OK}", "out-of-range expression '2.5'"),
    (f"v1/00003.jpg,0.5,0.5,x,{AUS_OK}", "non-numeric expression 'x'"),
    (f"v1/00003.jpg,0.5,0.5,1,2,{AUS_OK[2:]}", "out-of-range AU column 1 '2'"),
    (f"../outside.jpg,0.5,0.5,1,{AUS_OK}", "image path '../outside.jpg' leaves the data root"),
    (f"v1/../../outside.jpg,0.5,0.5,1,{AUS_OK}", "image path 'v1/../../outside.jpg' leaves the data root"),
    (f"/etc/passwd,0.5,0.5,1,{AUS_OK}", "absolute image path"),
    (f",0.5,0.5,1,{AUS_OK}", "empty image name"),
]


@pytest.mark.parametrize("line,message", BAD_ROWS, ids=[m for _, m in BAD_ROWS])
def test_mtl_bad_row_strict_and_skip(tmp_path, mtl, line, message):
    path = write_mtl(tmp_path, GOOD + [line])
    with pytest.raises(DataFormatError) as caught:
        read_split(tmp_path, mtl, "train", STRICT)
    assert f"{path}:6: {message}" in str(caught.value)
    assert "--skip-bad" in str(caught.value)
    index = read_split(tmp_path, mtl, "train", SKIP)
    assert len(index) == 4 and index.skipped == 1
    assert all(len(labels) == 4 for labels in index.labels.values())


def test_mtl_missing_image(tmp_path, mtl):
    path = write_mtl(tmp_path, GOOD)
    (tmp_path / "cropped_aligned/v2/00001.jpg").unlink()
    with pytest.raises(DataFormatError, match=rf"{path}:4: image not found: .*v2/00001.jpg"):
        read_split(tmp_path, mtl, "train", STRICT)
    assert len(read_split(tmp_path, mtl, "train", ReadOptions(check_images=False))) == 4
    assert read_split(tmp_path, mtl, "train", SKIP).skipped == 1
    (tmp_path / "cropped_aligned/v2/00002.jpg").unlink()  # the whole video folder gone
    (tmp_path / "cropped_aligned/v2").rmdir()
    assert read_split(tmp_path, mtl, "train", SKIP).skipped == 2


def test_mtl_duplicates_kept_first_and_reported(tmp_path, mtl):
    path = write_mtl(tmp_path, GOOD + [f"v1/00001.jpg,0.5,-0.25,4,{AUS_OK}", f"v1/00001.jpg,0,0,1,{AUS_OK}"])
    index = read_split(tmp_path, mtl, "train", STRICT)  # duplicates do not fail a read
    assert len(index) == 4 and index.duplicates == 2 and index.skipped == 0
    assert index.labels["expr"].values[0] == 4  # the first line's labels
    assert any("duplicate" in note for note in index.notes)
    _, problems = scan_split(tmp_path, mtl, "train")
    assert [(p.line, p.severity) for p in problems] == [(6, "warning"), (7, "warning")]
    assert "first on line 2, same labels" in problems[0].message
    assert "DIFFERENT labels" in problems[1].message
    assert str(problems[0]).startswith(f"{path}:6: warning: duplicate image 'v1/00001.jpg'")


def test_mtl_every_problem_collected(tmp_path, mtl):
    lines = GOOD + [line for line, _ in BAD_ROWS]
    write_mtl(tmp_path, lines)
    _, problems = scan_split(tmp_path, mtl, "train")
    assert len(problems) == len(BAD_ROWS)
    assert [p.line for p in problems] == list(range(6, 6 + len(BAD_ROWS)))
    with pytest.raises(DataFormatError, match=r"(?s)15 problem\(s\).*and 5 more"):
        read_split(tmp_path, mtl, "train", STRICT)


def test_mtl_header_and_blank_lines(tmp_path, mtl):
    path = write_mtl(tmp_path, GOOD)
    path.write_text(MTL_HEADER + "\r\n" + GOOD[0] + "\r\n\r\n" + GOOD[1] + "\r\n", encoding="utf-8")
    assert len(read_split(tmp_path, mtl, "train", STRICT)) == 2  # CRLF and a blank line are fine
    path.write_text("\n".join(GOOD) + "\n", encoding="utf-8")  # no header
    with pytest.raises(DataFormatError, match=r":1: fatal: header should be"):
        read_split(tmp_path, mtl, "train", SKIP)  # skip-bad cannot help a wrong header
    path.write_bytes(MTL_HEADER.encode() + b"\n" + GOOD[0].encode() + b"\xff\n")
    with pytest.raises(DataFormatError, match=r":2: fatal: not UTF-8"):
        read_split(tmp_path, mtl, "train", SKIP)


def test_missing_split_and_unknown_names(tmp_path, mtl, lsd):
    with pytest.raises(DataFormatError, match="training_set_annotations.txt: split 'train' not found"):
        read_split(tmp_path, mtl, "train", STRICT)
    with pytest.raises(DataFormatError, match="test_set_release.txt: split 'test' not found"):
        read_split(tmp_path, lsd, "test", STRICT)
    with pytest.raises(ConfigError, match="did you mean 'validation'"):
        read_split(tmp_path, mtl, "valdation", STRICT)

    class OtherTrack(type(lsd)):
        name = "other"

    with pytest.raises(ConfigError, match="no track 'other'"):
        read_split(tmp_path, OtherTrack(), "train", STRICT)


# --------------------------------------------------------------------------- lsd


def test_lsd_folders_give_labels_and_misspellings_map_to_anger(tmp_path, lsd):
    write_lsd(tmp_path, {"ANGRER": 2, "DISGUST": 1, "FEAR": 1, "HAPPINESS": 3, "SADNESS": 1, "SURPRISE": 1})
    write_lsd(tmp_path, {"ANGERE": 1, "ANGER": 1, "HAPPINESS": 1}, split="validation")
    train = read_split(tmp_path, lsd, "train", STRICT)
    assert len(train) == 9 and train.paths[0] == "training_set_synthetic_images/ANGRER/0.jpg"
    assert np.bincount(train.labels["expr"].values, minlength=6).tolist() == [2, 1, 1, 3, 1, 1]
    assert train.labels["expr"].mask.all()
    validation = read_split(tmp_path, lsd, "validation", STRICT)
    assert validation.labels["expr"].values.tolist() == [0, 0, 3]
    _, problems = scan_split(tmp_path, lsd, "validation")  # absent classes: warnings only
    assert {p.severity for p in problems} == {"warning"} and len(problems) == 4


def test_lsd_unknown_folder_and_stray_files(tmp_path, lsd):
    write_lsd(tmp_path, {"ANGER": 1, "DISGUST": 1, "FEAR": 1, "HAPPYNESS": 2, "SADNESS": 1, "SURPRISE": 1})
    base = tmp_path / "training_set_synthetic_images"
    (base / "notes.txt").write_text("x")
    (base / "FEAR" / "readme.md").write_text("x")
    with pytest.raises(DataFormatError, match=r"HAPPYNESS: unknown class folder 'HAPPYNESS' \(did you mean 'HAPPINESS'"):
        read_split(tmp_path, lsd, "train", STRICT)
    index = read_split(tmp_path, lsd, "train", SKIP)
    assert len(index) == 5 and index.skipped == 2
    _, problems = scan_split(tmp_path, lsd, "train")
    messages = [str(p) for p in problems]
    assert any("notes.txt: warning: file outside any class folder" in m for m in messages)
    assert any("FEAR: warning: 1 non-image file(s) ignored" in m for m in messages)


def test_lsd_test_release(tmp_path, lsd):
    (tmp_path / "test_set_images").mkdir()
    for name in ("0.jpg", "1.jpg"):
        (tmp_path / "test_set_images" / name).write_bytes(JPEG)
    release = tmp_path / "LSD_Challenge_test_set_release.txt"
    release.write_text("image,expression\n0.jpg\n1.jpg\n2.jpg\n../x.jpg\n", encoding="utf-8")
    _, problems = scan_split(tmp_path, lsd, "test")
    assert [str(p) for p in problems] == [
        f"{release}:4: image not found: {tmp_path / 'test_set_images' / '2.jpg'}",
        f"{release}:5: image path '../x.jpg' leaves the data root",
    ]
    index = read_split(tmp_path, lsd, "test", SKIP)
    assert index.paths == ["test_set_images/0.jpg", "test_set_images/1.jpg"] and index.skipped == 2


# --------------------------------------------------------------------------- fingerprints


def test_fingerprint_follows_content(tmp_path, mtl, lsd):
    path = write_mtl(tmp_path, GOOD)
    first = read_split(tmp_path, mtl, "train", STRICT).fingerprint
    assert read_split(tmp_path, mtl, "train", STRICT).fingerprint == first  # deterministic
    assert read_split(tmp_path, mtl, "train", SKIP).fingerprint == first
    data = path.read_bytes()
    path.write_bytes(data.replace(b"0.5,-0.25", b"0.5,-0.26"))  # one annotation byte
    second = read_split(tmp_path, mtl, "train", STRICT).fingerprint
    assert second != first
    path.write_bytes(data)
    assert read_split(tmp_path, mtl, "train", STRICT).fingerprint == first
    (tmp_path / "cropped_aligned/v1/00002.jpg").write_bytes(b"a re-encoded image")
    assert read_split(tmp_path, mtl, "train", STRICT).fingerprint not in {first, second}

    write_lsd(tmp_path, {"ANGER": 2, "FEAR": 1})
    before = read_split(tmp_path, lsd, "train", STRICT).fingerprint
    (tmp_path / "training_set_synthetic_images/FEAR/0.jpg").write_bytes(b"bigger image")
    changed = read_split(tmp_path, lsd, "train", STRICT).fingerprint
    (tmp_path / "training_set_synthetic_images/FEAR/0.jpg").rename(
        tmp_path / "training_set_synthetic_images/ANGER/9.jpg")  # same bytes, other class
    moved = read_split(tmp_path, lsd, "train", STRICT).fingerprint
    assert len({before, changed, moved}) == 3


def test_skipped_rows_change_the_fingerprint(tmp_path, mtl):
    write_mtl(tmp_path, GOOD)
    clean = read_split(tmp_path, mtl, "train", SKIP)
    write_mtl(tmp_path, GOOD + ["v9/1.jpg,2,2,2," + AUS_OK])
    dropped = read_split(tmp_path, mtl, "train", SKIP)
    assert dropped.paths == clean.paths and dropped.fingerprint != clean.fingerprint


# --------------------------------------------------------------------------- check_dataset


def test_check_dataset_counts_and_problems(tmp_path, mtl, abaw4):
    write_mtl(tmp_path, GOOD + [f"v1/00009.jpg,3,0,1,{AUS_OK}"])
    report = check_dataset(tmp_path, mtl, abaw4)
    train, validation, test = report.splits
    assert train.present and not validation.present and not test.present
    assert train.rows == 4 and train.skipped == 1
    assert train.label_counts == {"va": 2, "expr": 3, "au": 2}
    assert train.class_counts["expr"]["Happiness"] == 1 and train.class_counts["expr"]["Other"] == 1
    assert train.class_counts["au"]["AU2"] == 2 and "va" not in train.class_counts
    assert report.failed(skip_bad=False) and not report.failed(skip_bad=True)
    assert [p.severity for p in report.problems] == ["error", "warning", "warning"]
    empty = check_dataset(tmp_path / "nothing", mtl, abaw4)
    assert empty.failed(skip_bad=True) and empty.problems[-1].severity == "fatal"


def test_check_dataset_without_a_collecting_reader(tmp_path, mtl, abaw4):
    """A dataset plugin that offers only ``read_split`` is still checked: its strict refusal
    is reported, and the counts come from a read that skips the bad rows."""
    strict_only = DatasetSpec(name="strict-only", tracks=("mtl",), read_split=abaw4.read_split)
    write_mtl(tmp_path, GOOD + [f"v1/00009.jpg,3,0,1,{AUS_OK}"])
    report = check_dataset(tmp_path, mtl, strict_only)
    train = report.splits[0]
    assert train.present and train.rows == 4 and train.skipped == 1
    errors = [p for p in report.problems if p.severity == "error"]
    assert len(errors) == 1 and "out-of-range valence '3'" in errors[0].message
    assert report.failed(skip_bad=False) and not report.failed(skip_bad=True)
    (tmp_path / "training_set_annotations.txt").write_text("no header\n", encoding="utf-8")
    report = check_dataset(tmp_path, mtl, strict_only)
    assert report.splits[0].present and report.failed(skip_bad=True)


# --------------------------------------------------------------------------- submissions


def test_mtl_submission_round_trip(tmp_path):
    names = ["v1/00001.jpg", "v1/00002.jpg", "v2/00001.jpg"]
    va = np.array([[0.25, -1.0], [1.0, 0.123456], [0.0, -0.5]])
    expr = np.array([0, 7, 3])
    au = np.array([[0, 1] * 6, [1] * 12, [0] * 12])
    path = tmp_path / "out" / "mtl.txt"
    write_mtl_submission(path, names, va, expr, au)
    text = path.read_text(encoding="utf-8").splitlines()
    assert text[0] == "image,valence,arousal,expression,aus"
    assert text[1] == "v1/00001.jpg,0.250000,-1.000000,0,0,1,0,1,0,1,0,1,0,1,0,1"
    back = read_mtl_submission(path)
    assert back.names == names
    np.testing.assert_allclose(back.va, va, atol=1e-6)
    assert back.expr.tolist() == expr.tolist() and back.au.tolist() == au.tolist()
    assert [p.name for p in path.parent.iterdir()] == ["mtl.txt"]  # no temporary left behind


def test_lsd_submission_round_trip(tmp_path):
    path = tmp_path / "lsd.txt"
    write_lsd_submission(path, ["0.jpg", "1.jpg", "2.jpg"], np.array([5, 0, 3]))
    assert path.read_text(encoding="utf-8") == "image,expression\n0.jpg,5\n1.jpg,0\n2.jpg,3\n"
    names, labels = read_lsd_submission(path)
    assert names == ["0.jpg", "1.jpg", "2.jpg"] and labels.tolist() == [5, 0, 3]


@pytest.mark.parametrize(
    "args,message",
    [
        ((["a"], [[0.0, 1.5]], [0], [[0] * 12]), r"\[-1, 1\]"),
        ((["a"], [[0.0, np.nan]], [0], [[0] * 12]), "NaN"),
        ((["a"], [[0.0, 0.0]], [8], [[0] * 12]), "expr must be integers"),
        ((["a"], [[0.0, 0.0]], [0], [[2] * 12]), "au must be integers"),
        ((["a"], [[0.0, 0.0]], [0], [[0] * 11]), r"au has shape \(1, 11\)"),
        ((["a", "b"], [[0.0, 0.0]], [0], [[0] * 12]), "2 names for 1"),
        ((["a,b"], [[0.0, 0.0]], [0], [[0] * 12]), "holds ','"),
    ],
)
def test_mtl_submission_writer_refuses_bad_input(tmp_path, args, message):
    path = tmp_path / "mtl.txt"
    path.write_text("previous", encoding="utf-8")
    with pytest.raises(DataFormatError, match=message):
        write_mtl_submission(path, *args)
    assert path.read_text(encoding="utf-8") == "previous"  # nothing half-written


def test_submission_readers_name_file_and_line(tmp_path):
    path = tmp_path / "lsd.txt"
    path.write_text("image,expression\n0.jpg,1\n1.jpg,6\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=rf"{path}:3: label '6'"):
        read_lsd_submission(path)
    path.write_text("image,expression\n0.jpg,1,2\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=rf"{path}:2: expected 2 columns, found 3"):
        read_lsd_submission(path)
    with pytest.raises(DataFormatError, match="header should be"):
        read_mtl_submission(path)
    with pytest.raises(DataFormatError, match="not found"):
        read_mtl_submission(tmp_path / "absent.txt")


# --------------------------------------------------------------------------- parse cache


def test_parse_cache_gives_the_same_index_and_never_hides_file_changes(tmp_path, mtl, monkeypatch):
    from abawbench.data import parse_cache

    monkeypatch.setattr(parse_cache, "MIN_LINES", 1)
    lines = GOOD + [f"v1/00001.jpg,0,0,1,{AUS_OK}", f"v3/1.jpg,9,0,1,{AUS_OK}"]
    path = write_mtl(tmp_path, lines)
    fresh_index, fresh_problems = scan_split(tmp_path, mtl, "train")
    entries = list((tmp_path / "abawbench-cache" / "parsed").glob("*.npz"))
    assert len(entries) == 1
    cached_index, cached_problems = scan_split(tmp_path, mtl, "train")
    assert cached_problems == fresh_problems
    assert cached_index.paths == fresh_index.paths and cached_index.fingerprint == fresh_index.fingerprint
    for task, labels in fresh_index.labels.items():
        np.testing.assert_array_equal(cached_index.labels[task].values, labels.values)
        np.testing.assert_array_equal(cached_index.labels[task].mask, labels.mask)
    # A second read takes the parse from the entry: a value changed in it shows up; an entry
    # whose arrays no longer agree with each other is parsed again.
    with np.load(entries[0]) as stored:
        arrays = {name: stored[name] for name in stored.files}

    def rewrite_entry(**changed):
        with open(entries[0], "wb") as handle:
            np.savez(handle, **(arrays | changed))

    rewrite_entry(va=np.where(arrays["va"] == -0.25, 0.75, arrays["va"]))
    assert scan_split(tmp_path, mtl, "train")[0].labels["va"].values[0, 1] == 0.75
    rewrite_entry(va=arrays["va"][:1])
    reparsed_index, reparsed_problems = scan_split(tmp_path, mtl, "train")
    assert reparsed_problems == fresh_problems
    np.testing.assert_array_equal(reparsed_index.labels["va"].values, fresh_index.labels["va"].values)
    # Images are listed afresh: a deleted image is found although the parse is cached.
    (tmp_path / "cropped_aligned/v2/00001.jpg").unlink()
    _, problems = scan_split(tmp_path, mtl, "train")
    assert any("image not found" in p.message and p.line == 4 for p in problems)
    # A changed byte is a new key; a corrupt entry is parsed again.
    path.write_text(path.read_text(encoding="utf-8").replace("0.5,-0.25", "0.5,-0.5"), encoding="utf-8")
    assert read_split(tmp_path, mtl, "train", SKIP).labels["va"].values[0, 1] == -0.5
    for entry in (tmp_path / "abawbench-cache" / "parsed").glob("*.npz"):
        entry.write_bytes(b"garbage")
    assert read_split(tmp_path, mtl, "train", SKIP).labels["va"].values[0, 1] == -0.5
