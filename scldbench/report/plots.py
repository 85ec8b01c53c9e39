"""Figures of a run as PNG bytes (matplotlib, Agg): per-cluster heatmap, guidance sweep, embeddings of real vs
generated cells, training-time bars. Each returns None when the records hold nothing to draw."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from scldbench.counts.numpy import log_normalise  # noqa: E402
from scldbench.metrics.aggregate import mean_interval  # noqa: E402

if TYPE_CHECKING:
    from scldbench.record import JobRecord
    from scldbench.results import ProtocolView

MAX_EMBEDDING_PANELS = 8


def to_png(fig: Any, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _by_label(records: Sequence[JobRecord]) -> dict[str, list[JobRecord]]:
    """label -> its finished records, in first-seen order."""
    out: dict[str, list[JobRecord]] = {}
    for record in records:
        if record.ok:
            out.setdefault(record.label, []).append(record)
    return out


def _cluster_order(names: set[str]) -> list[str]:
    return sorted(names, key=lambda c: (0, int(c), "") if c.isdigit() else (1, 0, c))


def cluster_auc_matrix(views: Sequence[ProtocolView]) -> tuple[list[str], list[str], np.ndarray]:
    """(labels, clusters, mean per-cluster RF AUC over seeds; NaN where skipped or missing) of one protocol's
    views."""
    groups: dict[str, list[ProtocolView]] = {}
    for view in views:
        if view.ok:
            groups.setdefault(view.record.label, []).append(view)
    groups = {k: v for k, v in groups.items() if any(view.per_cluster for view in v)}
    clusters = _cluster_order({c for vs in groups.values() for v in vs for c in v.per_cluster})
    matrix = np.full((len(groups), len(clusters)), np.nan)
    for i, rows in enumerate(groups.values()):
        for j, cluster in enumerate(clusters):
            values = [v.per_cluster.get(cluster, {}).get("rf_auc") for v in rows]
            matrix[i, j] = mean_interval(v for v in values if v is not None).mean
    return list(groups), clusters, matrix


def cluster_heatmap(views: Sequence[ProtocolView]) -> bytes | None:
    """Generator x cluster heatmap of the per-cluster RF AUC (0.5 = indistinguishable); grey = not scored."""
    labels, clusters, matrix = cluster_auc_matrix(views)
    if not labels or not clusters:
        return None
    fig, ax = plt.subplots(figsize=(1.2 + 0.62 * len(clusters), 1.0 + 0.45 * len(labels)))
    cmap = matplotlib.colormaps["RdYlGn_r"].with_extremes(bad="#dddddd")
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=0.5, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(clusters)), clusters)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("cluster (grey: not scored, too few real test cells)")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, "–" if math.isnan(value) else f"{value:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, label="RF AUC (mean over seeds)", shrink=0.8)
    ax.set_title("Per-cluster RF AUC: cells generated for a cluster vs real test cells of it")
    return to_png(fig)


def _sweep_curves(rows: Sequence[JobRecord]) -> dict[str, tuple[list[float], list[float], list[float], list[float]]]:
    """cluster -> (weights, mean on-target, min, max) over the seeds of one label."""
    points: dict[str, dict[float, list[float]]] = {}
    for record in rows:
        for p in record.guidance_sweep or []:
            points.setdefault(str(p["cluster"]), {}).setdefault(float(p["guidance"]), []).append(float(p["on_target"]))
    curves = {}
    for cluster in _cluster_order(set(points)):
        ws = sorted(points[cluster])
        vals = [points[cluster][w] for w in ws]
        curves[cluster] = (ws, [float(np.mean(v)) for v in vals], [min(v) for v in vals], [max(v) for v in vals])
    return curves


def guidance_sweep(records: Sequence[JobRecord]) -> bytes | None:
    """On-target fraction vs guidance weight w, one line per cluster, one panel per generator (paper Fig. 5)."""
    groups = {k: v for k, v in _by_label(records).items() if any(r.guidance_sweep for r in v)}
    if not groups:
        return None
    fig, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups), 3.6), squeeze=False, sharey=True)
    for ax, (label, rows) in zip(axes[0], groups.items(), strict=True):
        for cluster, (ws, mean, low, high) in _sweep_curves(rows).items():
            line = ax.plot(ws, mean, marker="o", label=f"cluster {cluster}")[0]
            ax.fill_between(ws, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
        ax.set_title(label)
        ax.set_xlabel("guidance weight w")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("fraction classified as the target cluster")
    fig.suptitle("Guidance sweep (mean over seeds; band: min–max)", y=1.04)
    return to_png(fig)


def training_times(records: Sequence[JobRecord]) -> bytes | None:
    """Fit and sample seconds per generator, mean over seeds with min–max whiskers, log scale (paper Fig. 4)."""
    groups = _by_label(records)
    groups = {k: v for k, v in groups.items() if any(r.fit_seconds is not None for r in v)}
    if not groups:
        return None
    labels = list(groups)
    y = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.42 * len(labels)))
    for offset, key, colour in ((-0.2, "fit_seconds", "#3b6ea5"), (0.2, "sample_seconds", "#e08a2c")):
        values = [[float(getattr(r, key)) for r in groups[k] if getattr(r, key) is not None] or [math.nan]
                  for k in labels]
        mean = np.array([np.mean(v) for v in values])
        floor = 1e-5  # a log axis cannot show 0 s: controls that take no time sit at the floor
        mean = np.maximum(mean, floor)
        err = np.array([[m - max(min(v), floor), max(v) - m] for m, v in zip(mean, values, strict=True)]).T
        ax.barh(y + offset, mean, height=0.38, color=colour, xerr=np.maximum(err, 0), label=key.replace("_", " "))
        for yi, m, v in zip(y + offset, mean, values, strict=True):
            ax.text(max(m, np.nanmax(v)) * 1.3, yi, f"{m:.3g} s", va="center", fontsize=7)
    ax.set_xscale("log")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("seconds (log scale)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlim(right=float(np.nanmax(ax.get_xlim()[1])) * 30)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    device = next((r.device for r in records if r.device), "")
    ax.set_title(f"Training and sampling time per generator ({device})")
    return to_png(fig)


def _subsample(x: Any, n_max: int, rng: np.random.Generator) -> Any:
    if x.shape[0] <= n_max:
        return x
    return x[np.sort(rng.choice(x.shape[0], n_max, replace=False))]


def embed(real: Any, generated: Any, method: str = "umap", seed: int = 0) -> np.ndarray:
    """2-D coordinates of real and generated cells together (rows: real first): log-normalised counts,
    PCA, then UMAP (scanpy) or just the first two PCs with method='pca'."""
    import anndata as ad
    import scanpy as sc

    x = np.vstack([log_normalise(real), log_normalise(generated)])
    adata = ad.AnnData(X=x.astype(np.float32))
    n_comps = max(2, min(30, x.shape[0] - 1, x.shape[1] - 1))
    sc.pp.pca(adata, n_comps=n_comps, random_state=seed)
    if method == "pca":
        return np.asarray(adata.obsm["X_pca"][:, :2])
    sc.pp.neighbors(adata, n_neighbors=15, use_rep="X_pca", random_state=seed)
    sc.tl.umap(adata, random_state=seed)
    return np.asarray(adata.obsm["X_umap"])


def embeddings(
    real: Any,
    samples: dict[str, Any],
    method: str = "umap",
    max_cells: int = 1000,
    seed: int = 0,
) -> bytes | None:
    """One panel per generator (at most 8): real test cells and that generator's cells embedded together.

    `real` and each value of `samples` are count matrices (cells x genes, same genes)."""
    if real is None or not samples:
        return None
    rng = np.random.default_rng(seed)
    items = list(samples.items())[:MAX_EMBEDDING_PANELS]
    real = _subsample(real, max_cells, rng)
    ncols = min(4, len(items))
    nrows = math.ceil(len(items) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.4 * nrows), squeeze=False)
    for ax in axes.flat[len(items):]:
        ax.set_visible(False)
    for ax, (label, generated) in zip(axes.flat, items, strict=False):
        generated = _subsample(generated, max_cells, rng)
        coords = embed(real, generated, method, seed)
        n_real = real.shape[0]
        ax.scatter(*coords[:n_real].T, s=5, c="#7f7f7f", alpha=0.6, label="real test", linewidths=0)
        ax.scatter(*coords[n_real:].T, s=5, c="#d62728", alpha=0.6, label="generated", linewidths=0)
        ax.set_title(label, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes.flat[0].legend(loc="best", fontsize=7, markerscale=2)
    name = "UMAP" if method == "umap" else "PCA"
    fig.suptitle(f"Real test cells (grey) and generated cells (red): {name} of log-normalised counts, per generator")
    return to_png(fig)


def run_samples(records: Sequence[JobRecord], read: Callable[[str], Any]) -> dict[str, Any]:
    """label -> the generated counts of its first finished job with saved samples (`read(job_id)` -> AnnData)."""
    out: dict[str, Any] = {}
    for record in records:
        if not record.ok or record.label in out:
            continue
        adata = read(record.job_id)
        if adata is not None:
            out[record.label] = adata.X
    return out
