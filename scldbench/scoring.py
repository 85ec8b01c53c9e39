"""Scoring one job's stored sample under every protocol a suite names, and rescoring a stored sample.

One sample per job: it is drawn once (conditional generators with the real test composition), stored, and each
protocol scores it; `record.scores[protocol]` is a `ProtocolScores` (description, settings, metrics, per_cluster,
status, error).
Scores that do not depend on the protocol are computed once per sample: the biology-level block (DE recovery
and gene-gene correlation, with their real-vs-real references) is recorded under every protocol, so each board
shows it beside that protocol's distances; the extras (manifold, data properties, memorisation, TSTR,
augmentation) are recorded once, under scgan-v1 when the suite runs it (else its first protocol), because they
live in spaces of their own (see the catalogue) and showing them on two boards would count them twice.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import anndata as ad

from scldbench.data.prepare import PreparedData
from scldbench.errors import ScldbenchError
from scldbench.metrics.pca import DENSE_LIMIT
from scldbench.protocols import EXTRAS_PROTOCOL, ScoringProtocol, get_protocol
from scldbench.record import SPARSE_PATH_KEY, JobRecord, ProtocolScores, asked_settings
from scldbench.suite import EvaluateSettings


@dataclass
class ScoringContext:
    """The prepared data every job of a run is scored against, with a memo of what does not depend on the job
    (HVGs and PCA fitted on real cells, real markers, real-vs-real references)."""

    prepared: PreparedData
    cache: dict[str, Any] = field(default_factory=dict)

    def memo(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]


_SHARED: dict[str, ScoringContext] = {}


def shared_context(prepared: PreparedData) -> ScoringContext:
    """This process's scoring context for `prepared` (one per process, so that every job scored here reuses its
    memo; a new prepared dataset replaces the old one)."""
    context = _SHARED.get(prepared.fingerprint)
    if context is None or context.prepared is not prepared:
        _SHARED.clear()
        context = _SHARED[prepared.fingerprint] = ScoringContext(prepared)
    return context


def extras_owner(protocols: Sequence[str]) -> str | None:
    """The protocol the protocol-independent extras are recorded under."""
    if not protocols:
        return None
    return EXTRAS_PROTOCOL if EXTRAS_PROTOCOL in protocols else protocols[0]


def test_composition(prepared: PreparedData) -> dict[str, int]:
    """Cluster -> number of real test cells: the labels a conditional generator is sampled with."""
    counts = prepared.test.obs[prepared.labels_key].astype(str).value_counts()
    return {str(k): int(v) for k, v in counts.items() if v > 0}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, ScldbenchError) else f"{type(exc).__name__}: {text}"


def score_protocol(
    protocol: ScoringProtocol,
    context: ScoringContext,
    samples: ad.AnnData,
    settings: EvaluateSettings,
    seed: int,
    *,
    shared: dict[str, Any],
    with_extras: bool,
) -> ProtocolScores:
    """One protocol's entry of `record.scores`; a failure is recorded in it, never raised."""
    from scldbench.evaluation import biology_scores, extra_scores, extras_sparse

    entry = ProtocolScores(description=protocol.description, settings=protocol.record_settings(settings),
                           status="running")
    try:
        metrics, per_cluster = protocol.score(context, samples, seed=seed, settings=settings)
        entry.metrics, entry.per_cluster = metrics, per_cluster
        sparse_parts = protocol.sparse_path(context, samples, settings)
        if "biology" not in shared:
            shared["biology"] = biology_scores(context, samples, settings)
        bio_metrics, bio_clusters = shared["biology"]
        metrics.update(bio_metrics)
        for cluster, values in bio_clusters.items():
            per_cluster.setdefault(cluster, {}).update(values)
        if with_extras and settings.extra_metrics:
            limit = DENSE_LIMIT if protocol.dense_limit is None else protocol.dense_limit
            if "extras" not in shared:
                shared["extras"] = extra_scores(context.prepared, samples, seed, dense_limit=limit)
            metrics.update(shared["extras"])
            if extras_sparse(context.prepared, samples, limit):
                sparse_parts.append("extras")
        if sparse_parts:
            entry.settings[SPARSE_PATH_KEY] = sparse_parts
        entry.status = "ok"
    except Exception as exc:  # one failing protocol must not stop the others
        entry.status = "failed"
        entry.error = _one_line(exc)
        entry.traceback = traceback.format_exc()
    return entry


def score_sample(
    context: ScoringContext,
    samples: ad.AnnData,
    protocols: Sequence[str],
    settings: EvaluateSettings,
    seed: int,
    *,
    extras_under: str | None = None,
) -> dict[str, ProtocolScores]:
    """`record.scores` entries for `protocols` (names), all from the one `samples` AnnData.

    The extras go under `extras_under` (default: `extras_owner(protocols)`); pass a name outside `protocols`
    to leave them out (a rescore whose record already holds them).
    """
    owner = extras_owner(list(protocols)) if extras_under is None else extras_under
    shared: dict[str, Any] = {}
    return {
        name: score_protocol(get_protocol(name), context, samples, settings, seed, shared=shared,
                             with_extras=name == owner)
        for name in protocols
    }


def scores_failed(scores: dict[str, ProtocolScores]) -> str | None:
    """'protocol <name>: <error>' for the first failed protocol entry, or None."""
    for name, entry in scores.items():
        if not entry.ok:
            return f"protocol {name}: {entry.error}"
    return None


def missing_protocols(record: JobRecord, protocols: Sequence[str], settings: EvaluateSettings) -> list[str]:
    """The suite protocols a stored record lacks, failed, or scored under other settings."""
    missing = []
    for name in protocols:
        entry = record.scores.get(name)
        wanted = get_protocol(name).record_settings(settings)
        if entry is None or not entry.ok or asked_settings(entry.settings) != wanted:
            missing.append(name)
    return missing


def rescore(
    record: JobRecord,
    context: ScoringContext,
    samples: ad.AnnData,
    protocols: Sequence[str],
    settings: EvaluateSettings,
) -> JobRecord:
    """A copy of `record` with every protocol of `protocols` it lacks scored from its stored `samples`.

    Nothing is refitted or resampled. The extras are computed only when the record holds them nowhere yet.
    """
    todo = missing_protocols(record, protocols, settings)
    if not todo:
        return record
    scores = dict(record.scores)
    owner = extras_owner(list(protocols))
    fresh = score_sample(context, samples, todo, settings, record.seed, extras_under=owner)
    # augmentation refits the generator, so a rescore keeps the values it found in the old entry
    old = scores.get(owner)
    kept = {k: v for k, v in old.metrics.items() if k.startswith("augment_")} if old is not None else {}
    if owner in fresh and kept:
        fresh[owner].metrics.update(kept)
    scores.update(fresh)
    failed = scores_failed({k: scores[k] for k in protocols if k in scores})
    return replace(record, scores=scores, status="failed" if failed else "ok", error=failed)
