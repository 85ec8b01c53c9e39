"""Property tests: store records of any shape, readers of any bytes, count checks and MMD under row order."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scldbench.data.counts import check_counts
from scldbench.data.readers import read_counts
from scldbench.errors import ScldbenchError
from scldbench.metrics.mmd import mmd_multi_kernel
from scldbench.record import JobRecord
from scldbench.store import RunStore, write_json

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
GOOD = {"job_id": "a-seed0-x", "key": "k", "generator": "random", "label": "a", "seed": 0, "status": "ok",
        "metrics": {"rf_auc": 0.9}, "fingerprint": "fp"}

tmp_settings = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@tmp_settings
@given(damage=st.one_of(JSON, st.binary(max_size=30), st.builds(lambda k: {x: v for x, v in GOOD.items() if x != k},
                                                              st.sampled_from(sorted(GOOD)))))
def test_any_damaged_record_is_skipped_and_the_good_one_kept(tmp_path, caplog, damage):
    store = RunStore(tmp_path / "run")
    write_json(store.root / "run.json", {"fingerprint": "fp"})
    store.write_record("a-seed0-x", JobRecord.from_json(GOOD))
    bad = store.job_path("b-seed0-y")
    if isinstance(damage, bytes):
        bad.write_bytes(damage)
    else:
        bad.write_text(json.dumps(damage))
    with caplog.at_level(logging.WARNING, logger="scldbench"):
        records = [r.to_json() for r in store.records()]
    assert GOOD in records
    assert len(records) == 1 or (records[1] == damage and damage["label"] == "a")
    if len(records) == 1 and damage != {k: v for k, v in GOOD.items() if k in ("fingerprint", "metrics")}:
        assert "b-seed0-y.json" in caplog.text or (isinstance(damage, dict) and damage.get("fingerprint") != "fp")
    again = store.read_record("b-seed0-y")
    assert again is None or again.to_json() == damage


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=200), suffix=st.sampled_from([".h5ad", ".h5", ".mtx", ".txt"]))
def test_a_reader_given_any_bytes_raises_one_line_or_reads(tmp_path, content, suffix):
    path = tmp_path / f"data{suffix}"
    path.write_bytes(content)
    try:
        read_counts(path)
    except ScldbenchError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=60, deadline=None)
@given(value=st.floats(0.01, 1000).filter(lambda v: abs(v - round(v)) > 1e-3), where=st.integers(0, 19))
def test_a_non_integer_error_quotes_the_value_it_found(value, where):
    x = np.ones((4, 5))
    x.flat[where] = value
    x.flat[(where + 1) % 20] = 5000
    with pytest.raises(ScldbenchError, match=rf"e\.g\. {value:.6g};"):
        check_counts(x)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_mmd_is_invariant_to_row_order_and_zero_on_identical_sets(seed):
    rng = np.random.default_rng(seed)
    real, generated = rng.normal(size=(40, 5)), rng.normal(0.3, 1.0, size=(30, 5))
    base = mmd_multi_kernel(real, generated)
    shuffled = mmd_multi_kernel(rng.permutation(real), rng.permutation(generated))
    assert shuffled == pytest.approx(base, rel=1e-9, abs=1e-12)
    assert mmd_multi_kernel(real, rng.permutation(real)) == pytest.approx(0.0, abs=1e-6)
