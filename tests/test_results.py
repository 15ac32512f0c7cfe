"""Result files: written atomically, read back equal, and readable whatever configuration
wrote them (a result records its settings as data)."""

from __future__ import annotations

import json

import pytest

from abawbench.config import ProtocolConfig
from abawbench.errors import DataFormatError
from abawbench.results import EntrySpecModel, RunResult, ScoreWithInterval, read_result, result_path, write_result


def _result(**protocol) -> RunResult:
    spec = EntrySpecModel(model="tiny", loss="cross-entropy", protocol=ProtocolConfig(**protocol))
    return RunResult(status="completed", track="lsd", entry=spec.entry_id, spec=spec, seed=0,
                     primary_metric="macro_f1", primary=ScoreWithInterval(value=0.5), dataset="d", data_root="/d")


def test_result_round_trips_and_records_every_protocol_setting(tmp_path):
    result = _result(epochs=3, lr=0.01)
    path = result_path(tmp_path, "lsd", result.entry, 0)
    write_result(path, result)
    assert read_result(path) == result
    recorded = json.loads(path.read_text())["spec"]["protocol"]
    assert recorded == ProtocolConfig(epochs=3, lr=0.01).model_dump(mode="json")
    assert list(recorded)[:2] == ["name", "head"]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_entry_id_is_the_same_from_the_configuration_or_from_the_file(tmp_path):
    result = _result(epochs=3)
    path = result_path(tmp_path, "lsd", result.entry, 0)
    write_result(path, result)
    again = read_result(path)
    assert again.spec.entry_id == result.entry and again.spec.same_run_as(result.spec)
    assert again.spec.protocol.epochs == 3 and again.spec.protocol.name == "linear-probe"


def test_a_result_with_a_setting_this_version_does_not_know_still_reads(tmp_path):
    result = _result()
    raw = json.loads(result.model_dump_json())
    raw["spec"]["protocol"]["a_future_setting"] = 7
    raw["spec"]["protocol"]["augmentation"] = "a-plugins-augmentation"
    path = tmp_path / "seed0.json"
    path.write_text(json.dumps(raw))
    read = read_result(path)
    assert read.spec.protocol.a_future_setting == 7
    assert read.spec.entry_id != result.entry  # other settings, another entry


def test_malformed_result_names_the_file(tmp_path):
    path = tmp_path / "seed0.json"
    path.write_text('{"status": "completed"}')
    with pytest.raises(DataFormatError, match="seed0.json: not a valid result file"):
        read_result(path)
