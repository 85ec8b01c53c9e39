"""The job record: stored JSON and JobRecord round-trip, damaged records are refused, unknown keys survive."""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import replace

import pytest

from scldbench.record import DamagedRecord, JobRecord, ProtocolScores
from scldbench.results import protocol_views
from scldbench.store import RunStore, write_json

OK = {
    "job_id": "nb-seed0-0123456789", "key": "0123456789abcdef0123456789abcdef", "order": 2, "suite": "pbmc",
    "dataset": "pbmc68k-mini", "dataset_note": None, "generator": "nb", "label": "nb",
    "params": {"method": "moments"}, "seed": 0, "fingerprint": "fp0123", "status": "ok", "error": None,
    "started_at": "2026-12-01T05:00:00+00:00", "versions": {"scldbench": "0.3.0", "numpy": "2.1.0"},
    "device": "cpu (x86_64, 2 cores)", "fit_seconds": 1.25, "sample_seconds": 0.5,
    "scores": {
        "scgan-v1": {
            "description": "scGAN protocol", "settings": {"n_trees": 1000, "n_components": 50},
            "metrics": {"rf_auc": 0.61, "mmd": 0.32, "precision": None},
            "per_cluster": {"B cells": {"rf_auc": 0.66, "n_real": 40, "n_generated": 40},
                            "rare": {"n_real": 2, "n_generated": 2, "skipped": "too few real test cells"}},
            "status": "ok", "error": None,
        },
        "hvg-pca30-v1": {
            "description": "HVG + PCA 30", "settings": {"n_components": 30}, "metrics": {}, "per_cluster": {},
            "status": "failed", "error": "ValueError: no HVGs", "traceback": "Traceback (most recent call last):\n",
        },
    },
    "execution": {"executor": "processes", "workers": 2, "threads": 1},
    "params_resolved": {"method": "moments", "size_factors": False}, "fit_peak_rss_mb": 812.5,
    "fit_peak_rss_delta_mb": 40.0, "fit_peak_gpu_mb": None, "sample_peak_rss_mb": 820.0, "n_generated": 140,
    "guidance_sweep": [{"cluster": "0", "guidance": 1.0, "n": 50, "on_target": 0.7}],
    "diagnostics": {"unseen_cells": 140, "test_cells": 140, "protocol": "scgan-v1"},
    "seconds": 3.5, "finished_at": "2026-12-01T05:00:04+00:00",
}
FAILED = {
    "job_id": "vae-seed1-abcdef0123", "key": "abcdef0123456789abcdef0123456789", "order": 0, "suite": "pbmc",
    "dataset": "/data/cells.h5ad", "dataset_note": "dataset 'pbmc3k' could not be had", "generator": "vae",
    "label": "vae", "params": {}, "seed": 1, "fingerprint": "fp0123", "status": "failed",
    "error": "the worker process running this job was killed by SIGKILL", "traceback": None,
    "started_at": "2026-12-01T05:00:00+00:00", "finished_at": "2026-12-01T05:01:00+00:00", "seconds": 60,
    "versions": {"scldbench": "0.3.0"}, "device": None, "fit_seconds": None, "sample_seconds": None, "scores": {},
    "execution": {"executor": "processes", "workers": 2, "threads": 1},
}


@pytest.mark.parametrize("stored", [OK, FAILED], ids=["ok", "failed"])
def test_a_stored_record_round_trips_exactly(stored, tmp_path):
    record = JobRecord.from_json(copy.deepcopy(stored))
    assert record.to_json() == stored
    assert JobRecord.from_json(record.to_json()) == record
    store = RunStore(tmp_path / "run")
    store.write_record(record.job_id, record)
    assert json.loads(store.job_path(record.job_id).read_text()) == stored
    assert store.read_record(record.job_id) == record


def test_fields_are_typed_and_views_read_them():
    record = JobRecord.from_json(copy.deepcopy(OK))
    assert record.ok and record.seed == 0 and record.execution["workers"] == 2 and record.extra == {}
    scgan, hvg = record.scores["scgan-v1"], record.scores["hvg-pca30-v1"]
    assert isinstance(scgan, ProtocolScores) and scgan.settings["n_trees"] == 1000
    assert scgan.numeric_metrics() == {"rf_auc": 0.61, "mmd": 0.32}
    assert not hvg.ok and hvg.traceback.startswith("Traceback")
    views = {v.protocol: v for v in protocol_views(record)}
    assert views["scgan-v1"].ok and views["scgan-v1"].metrics == {"rf_auc": 0.61, "mmd": 0.32}
    assert views["hvg-pca30-v1"].error == "ValueError: no HVGs" and views["hvg-pca30-v1"].record is record


def test_a_record_built_in_code_writes_the_keys_every_record_has_and_optional_ones_with_a_value():
    record = JobRecord(job_id="a-seed0-k", key="k", generator="nb", label="a", seed=0, status="ok",
                       scores={"p": ProtocolScores(metrics={"rf_auc": 0.5})}, n_generated=10)
    stored = record.to_json()
    assert {"order", "dataset_note", "error", "fit_seconds", "scores", "execution", "n_generated"} <= set(stored)
    assert not {"traceback", "diagnostics", "reused", "fit_peak_gpu_mb", "run", "extra"} & set(stored)
    assert "traceback" not in stored["scores"]["p"]
    assert JobRecord.from_json(stored) == record
    assert replace(record, reused=True).to_json()["reused"] is True


@pytest.mark.parametrize(("damage", "problem"), [
    ({"drop": "seed"}, "field 'seed' is missing"),
    ({"drop": "job_id"}, "field 'job_id' is missing"),
    ({"seed": "0"}, "field 'seed' is '0', not an int"),
    ({"seed": True}, "field 'seed' is True, not an int"),
    ({"status": None}, "field 'status' is None, not a str"),
    ({"fit_seconds": "fast"}, "field 'fit_seconds' is 'fast', not a number or null"),
    ({"scores": [1, 2]}, "field 'scores' is [1, 2], not an object"),
    ({"scores": {"scgan-v1": {"metrics": [0.5]}}}, "scores['scgan-v1']: field 'metrics' is [0.5], not an object"),
    ({"scores": {"scgan-v1": "0.5"}}, "scores['scgan-v1'] is a str, not an object"),
    ({"drop": "scores"}, "an ok record without scores"),
])
def test_a_missing_or_mistyped_field_is_a_damaged_record(damage, problem, tmp_path, caplog):
    stored = copy.deepcopy(OK)
    stored.pop(damage.pop("drop", None), None)
    stored |= damage
    with pytest.raises(DamagedRecord, match=problem.replace("[", r"\[").replace("(", r"\(")):
        JobRecord.from_json(stored)
    store = RunStore(tmp_path / "run")
    write_json(store.root / "run.json", {"fingerprint": "fp0123"})
    write_json(store.job_path("bad"), stored)
    with caplog.at_level(logging.WARNING, logger="scldbench"):
        assert store.read_record("bad") is None and store.records() == []
    assert f"bad.json is damaged ({problem}); skipped" in caplog.text


def test_not_an_object_is_a_damaged_record():
    with pytest.raises(DamagedRecord, match="record is a list, not an object"):
        JobRecord.from_json([OK])


def test_keys_of_a_newer_version_survive_a_rewrite(tmp_path):
    newer = copy.deepcopy(OK) | {"carbon_g": 1.5, "hardware": {"cpu": "arm64"}}
    newer["scores"]["scgan-v1"]["interval"] = [0.58, 0.64]
    record = JobRecord.from_json(copy.deepcopy(newer))
    assert record.extra == {"carbon_g": 1.5, "hardware": {"cpu": "arm64"}}
    assert record.scores["scgan-v1"].extra == {"interval": [0.58, 0.64]}
    store = RunStore(tmp_path / "run")
    store.write_record(record.job_id, replace(record, reused=True))
    assert json.loads(store.job_path(record.job_id).read_text()) == newer | {"reused": True}


def test_a_record_from_before_0_3_0_reads_its_one_protocol():
    old = {"job_id": "a-seed0-x", "key": "k", "generator": "random", "label": "a", "seed": 0, "status": "ok",
           "protocol": "scgan-v1", "protocol_description": "scGAN", "evaluate": {"n_trees": 200},
           "metrics": {"rf_auc": 0.9}, "per_cluster": {}}
    record = JobRecord.from_json(dict(old))
    assert record.scores == {} and record.to_json() == old
    (entry,) = record.protocol_scores().values()
    assert entry.metrics == {"rf_auc": 0.9} and entry.settings == {"n_trees": 200} and entry.description == "scGAN"
