"""The job record: what one job of a suite did and scored, as stored in `jobs/<job_id>.json` of a run folder.

`JobRecord` declares every key of the record once, with its type; `ProtocolScores` is one protocol's entry of
`record.scores`. `JobRecord.from_json` checks a stored object and raises `DamagedRecord` (one line naming the
field) when it cannot be a record; `to_json` gives the stored shape back. Keys this version does not know are
kept in `extra` and written back, so rewriting a record never drops what another version put in it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TypeVar

from scldbench.errors import ScldbenchError

#: field metadata: the key is written only when it holds a value (or was read from the stored record)
OPTIONAL = "optional"
#: field metadata of an optional field: written whenever the named field is (the two are measured together)
WRITTEN_WITH = "written_with"
#: field metadata: the field is set by readers and never stored
NOT_STORED = "not_stored"
#: the protocol-settings key listing the parts of a job scored on the large-data sparse path: it says how the
#: data was scored, not what was asked, so rescoring and leaderboards ignore it (`asked_settings`)
SPARSE_PATH_KEY = "sparse_path"

T = TypeVar("T")


class DamagedRecord(ScldbenchError):
    """A stored job record that cannot be read as one (a field missing or of the wrong type)."""


def _optional(default: Any = None, *, with_field: str | None = None) -> Any:
    return field(default=default, metadata={OPTIONAL: True, WRITTEN_WITH: with_field})


@dataclass(kw_only=True)
class ProtocolScores:
    """One protocol's scores of a job's sample: an entry of `JobRecord.scores`.

    Parameters
    ----------
    description
        What the protocol does, as declared when the sample was scored.
    settings
        The settings the sample was scored with (`ScoringProtocol.record_settings`, e.g. n_trees), and under
        `SPARSE_PATH_KEY` the parts scored on the large-data sparse path when there were any.
    metrics
        Metric name -> value over all cells (None where a value could not be computed).
    per_cluster
        Cluster -> {metric name -> value, n_real, n_generated, skipped}.
    status
        ``"ok"``, or ``"failed"`` when scoring under this protocol failed.
    error
        The one-line reason of a failed protocol, else None.
    traceback
        The full traceback of a failed protocol (stored only then).
    extra
        Keys of the stored entry this version does not declare, written back as they were.
    """

    description: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    per_cluster: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    error: str | None = None
    traceback: str | None = _optional()
    extra: dict[str, Any] = field(default_factory=dict)
    _keys: frozenset[str] | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def numeric_metrics(self) -> dict[str, float]:
        """The metrics that are finite numbers, as floats."""
        return {k: float(v) for k, v in self.metrics.items() if is_number(v) and math.isfinite(v)}

    def to_json(self) -> dict[str, Any]:
        """The entry as stored under `record["scores"][protocol]`."""
        return _to_json(self)

    @classmethod
    def from_json(cls, data: Any, where: str = "scores entry") -> ProtocolScores:
        """An entry from its stored object; DamagedRecord when it is not an object or a field has the wrong type."""
        if not isinstance(data, dict):
            raise DamagedRecord(f"{where} is a {type(data).__name__}, not an object")
        try:
            return _from_json(cls, data)
        except DamagedRecord as exc:
            raise DamagedRecord(f"{where}: {exc}") from None


@dataclass(kw_only=True)
class JobRecord:
    """One job (dataset, generator, parameters, seed) of a suite: how it ran and what it scored.

    Stored as `jobs/<job_id>.json`; `to_json` gives that object and `from_json` reads it back. Optional fields
    are written only when they hold a value.

    Parameters
    ----------
    job_id
        The job's name in the store: `<label>-seed<seed>-<key[:10]>`.
    key
        Content hash of what makes the job's sample (data, generator, resolved params, seed, sampling settings,
        version); a rerun reuses an ok record with the same key.
    generator
        The registered generator name.
    label
        The row label in the suite (several labels may run one generator with other params).
    seed
        The job's seed.
    status
        ``"ok"`` or ``"failed"`` (``"running"`` only while the job runs).
    order
        Position of the generator in the suite's plan (reports list jobs in this order).
    suite
        The suite's name.
    dataset
        The dataset as given to the run (a name or a path).
    dataset_note
        Why the run used another dataset than the suite's, or None.
    params
        The suite's parameters for this generator.
    fingerprint
        Fingerprint of the prepared data (data, labels, split, preparation settings).
    error
        One line on why the job failed (a failed protocol: ``"protocol <name>: <error>"``), else None.
    started_at
        UTC time the job started, ISO 8601, to the second.
    versions
        Package -> version of the libraries the job ran with.
    device
        The device the job ran on, in words (None when the worker never reported it).
    fit_seconds, sample_seconds
        Seconds spent fitting and sampling (None when the job failed before).
    scores
        Protocol name -> its `ProtocolScores` of the job's one sample.
    execution
        How the job ran: {"executor", "workers", "threads"}.
    params_resolved
        The generator's full parameters (its defaults under the suite's params) as it ran.
    fit_peak_rss_mb, fit_peak_rss_delta_mb, fit_peak_gpu_mb, sample_peak_rss_mb
        Peak memory while fitting (resident, its rise during the fit, GPU) and while sampling, in MiB.
    n_generated
        Number of cells generated.
    output_warnings
        Warnings about the generated cells (library sizes beyond every real cell's).
    guidance_sweep
        Points {cluster, guidance, n, on_target} of a guidance sweep, when the suite asked for one.
    diagnostics
        The generator's own diagnostics and checks against held-out cells.
    traceback
        The traceback of a failed job.
    seconds
        Wall-clock seconds of the whole job.
    finished_at
        UTC time the job finished, ISO 8601, to the second.
    reused
        True when a rerun took the record from an earlier run (stored only then).
    run
        The run folder the record was read from (set by readers, not stored).
    extra
        Keys of the stored record this version does not declare (e.g. the top-level ``protocol`` and ``metrics``
        of records written before 0.3.0), written back as they were.
    """

    job_id: str
    key: str
    order: int | None = None
    suite: str | None = None
    dataset: str | None = None
    dataset_note: str | None = None
    generator: str
    label: str
    params: dict[str, Any] = field(default_factory=dict)
    seed: int
    fingerprint: str | None = None
    status: str
    error: str | None = None
    started_at: str | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    fit_seconds: float | None = None
    sample_seconds: float | None = None
    scores: dict[str, ProtocolScores] = field(default_factory=dict)
    execution: dict[str, Any] | None = None
    params_resolved: dict[str, Any] | None = _optional()
    fit_peak_rss_mb: float | None = _optional()
    fit_peak_rss_delta_mb: float | None = _optional(with_field="fit_peak_rss_mb")
    fit_peak_gpu_mb: float | None = _optional(with_field="fit_peak_rss_mb")
    output_warnings: list[str] | None = _optional()
    sample_peak_rss_mb: float | None = _optional()
    n_generated: int | None = _optional()
    guidance_sweep: list[dict[str, Any]] | None = _optional()
    diagnostics: dict[str, Any] | None = _optional()
    traceback: str | None = _optional()
    seconds: float | None = None
    finished_at: str | None = None
    reused: bool = _optional(False)
    run: str | None = field(default=None, compare=False, metadata={NOT_STORED: True})
    extra: dict[str, Any] = field(default_factory=dict)
    _keys: frozenset[str] | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when the job finished and every protocol scored it."""
        return self.status == "ok"

    def protocol_scores(self) -> dict[str, ProtocolScores]:
        """Protocol -> scores; for a record written before 0.3.0 (one protocol's scores at the top level, kept in
        `extra`) that one protocol's."""
        if self.scores or not self.extra.get("protocol"):
            return self.scores
        old = self.extra
        return {str(old["protocol"]): ProtocolScores(
            description=str(old.get("protocol_description") or ""), settings=_dict(old.get("evaluate")),
            metrics=_dict(old.get("metrics")), per_cluster=_dict(old.get("per_cluster")), status=self.status,
            error=self.error,
        )}

    def to_json(self) -> dict[str, Any]:
        """The record as stored in `jobs/<job_id>.json`.

        Returns
        -------
        dict
            The JSON object: the declared keys (optional ones only when they hold a value or were read), then the
            `extra` keys; `run` is left out. ``JobRecord.from_json(record.to_json()) == record``.
        """
        out = _to_json(self)
        if "scores" in out:
            out["scores"] = {name: entry.to_json() for name, entry in self.scores.items()}
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "record") -> JobRecord:
        """A record from its stored object.

        Parameters
        ----------
        data
            The JSON object of `jobs/<job_id>.json`, as `json.load` gives it.
        where
            What `data` is, for the error message.

        Returns
        -------
        JobRecord
            The record; keys it does not declare are kept in `extra`.

        Raises
        ------
        DamagedRecord
            When `data` is not an object, a field without a default is missing, a field has the wrong type, or an
            ok record holds no scores.
        """
        if not isinstance(data, dict):
            raise DamagedRecord(f"{where} is a {type(data).__name__}, not an object")
        data = dict(data)
        scores = data.get("scores")
        if isinstance(scores, dict):
            data["scores"] = {str(name): ProtocolScores.from_json(entry, f"scores[{name!r}]")
                              for name, entry in scores.items()}
        record = _from_json(cls, data)
        if record.ok and not isinstance(scores, dict) and not isinstance(record.extra.get("metrics"), dict):
            raise DamagedRecord("an ok record without scores")
        return record


def asked_settings(settings: dict[str, Any] | None) -> dict[str, Any]:
    """Recorded protocol settings without what describes how the data was scored (`SPARSE_PATH_KEY`)."""
    return {k: v for k, v in (settings or {}).items() if k != SPARSE_PATH_KEY}


def is_number(value: Any) -> bool:
    """True for an int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _stored_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.name not in ("extra", "_keys") and not f.metadata.get(NOT_STORED)]


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _written(obj: Any) -> set[str]:
    """The keys `obj.to_json` writes: those the stored object had, every non-optional field of an object built in
    code (and the optional ones written with a field it writes), and any field holding other than its default."""
    keys = obj._keys
    out: set[str] = set()
    for f in _stored_fields(type(obj)):
        if keys is not None:
            present = f.name in keys
        else:
            present = not f.metadata.get(OPTIONAL) or f.metadata.get(WRITTEN_WITH) in out
        if present or getattr(obj, f.name) != _default(f):
            out.add(f.name)
    return out


def _to_json(obj: Any) -> dict[str, Any]:
    written = _written(obj)
    out = {f.name: getattr(obj, f.name) for f in _stored_fields(type(obj)) if f.name in written}
    return out | {k: v for k, v in obj.extra.items() if k not in out}


def _from_json(cls: type[T], data: dict[str, Any]) -> T:
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for f in _stored_fields(cls):
        if f.name not in data:
            if _default(f) is dataclasses.MISSING:
                raise DamagedRecord(f"field {f.name!r} is missing")
            continue
        value = data[f.name]
        if not _accepts(hints[f.name], value):
            raise DamagedRecord(f"field {f.name!r} is {_short(value)}, not {_type_name(hints[f.name])}")
        values[f.name] = value
    names = {f.name for f in _stored_fields(cls)}
    extra = {str(k): v for k, v in data.items() if k not in names}
    return cls(**values, extra=extra, _keys=frozenset(k for k in data if k in names))


def _accepts(hint: Any, value: Any) -> bool:
    """Whether `value`, read from JSON, fits the type `hint` (an int is a float; a bool is neither)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(arg, value) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is Any:
        return True
    if hint is float:
        return is_number(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is not None:
        return isinstance(value, origin)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return "null"
    origin = typing.get_origin(hint) or hint
    return {dict: "an object", list: "a list", str: "a str", int: "an int", float: "a number",
            bool: "a bool"}.get(origin, getattr(origin, "__name__", str(origin)))


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
