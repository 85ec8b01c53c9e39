"""Every metric scldbench records, declared once: name (or pattern), function, direction, space and label.

Scoring, ranking and reports read these declarations; adding a metric is one entry here (plus its function).
A `two_sample` metric of a protocol's space is computed by that protocol on every pair of point sets it
compares (whole data and each cluster); one declared with `per_cluster` also gets a derived `cluster_<name>_mean`
entry (the per-cluster values averaged, weighted by real test cells when `per_cluster="weighted"`).

Spaces: "scgan-v1" (counts normalised to 20,000 per cell, no log; logpca-v1 computes the same metrics on log1p
of counts normalised to 1e4), "hvg-pca30" (PCA-30 of log1p CP10k over 2,000 highly variable genes),
"log-pca50-train" (PCA-50 of log1p CP10k fitted on real training cells), "log1p-cp10k" (log1p of counts
normalised to 1e4, all genes), "counts" (raw counts), "classifier" (a cell-type classifier's predictions on
real test cells), "time".
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from fnmatch import fnmatch
from typing import Any

DIRECTIONS = ("lower", "higher", "target", "info")


@dataclass(frozen=True)
class Metric:
    """One declared metric (or a family of them, when `name` holds fnmatch wildcards).

    direction: "lower", "higher", "target" (closest to `target` is best) or "info" (recorded, never ranked).
    function: "module:attribute" of the function that computes it (resolved only when asked for).
    space: where it is computed (see the module docstring). partner: the metric it must be read with.
    """

    name: str
    label: str
    direction: str
    space: str
    function: str
    formula: str
    target: float | None = None
    partner: str | None = None
    #: "mean" or "weighted": recorded per cluster too, and summarised as cluster_<name>_mean
    per_cluster: str | None = None
    #: computed by the protocol of this space on point sets (real, generated) -> float
    two_sample: bool = False
    #: in the main leaderboard table
    primary: bool = False

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"metric {self.name!r}: direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if (self.direction == "target") != (self.target is not None):
            raise ValueError(f"metric {self.name!r}: a target value goes with direction 'target' only")

    @property
    def is_pattern(self) -> bool:
        return any(c in self.name for c in "*?[")

    def compute(self) -> Callable[..., Any]:
        """The function that computes this metric."""
        module, _, attribute = self.function.partition(":")
        target: Any = importlib.import_module(module)
        for part in attribute.split("."):
            target = getattr(target, part)
        return target

    def rule(self) -> str:
        if self.direction == "target":
            return f"closest to {self.target:g} is best"
        return {"lower": "lower is better", "higher": "higher is better", "info": "not ranked"}[self.direction]


_M = "scldbench.metrics"
_DECLARED: tuple[Metric, ...] = (
    # scgan-v1 (and logpca-v1): the seed paper's protocol
    Metric("rf_auc", "RF AUC", "target", "scgan-v1", f"{_M}.rf_auc:rf_auc",
           "ROC AUC of a 1,000-tree random forest telling real (0) from generated (1) cells: stratified 70/30 "
           "split, PCA-50 fitted on the 70%, AUC on the 30%; 0.5 = indistinguishable",
           target=0.5, per_cluster="mean", primary=True),
    Metric("mmd", "MMD", "lower", "scgan-v1", f"{_M}.mmd:mmd_multi_kernel",
           "sqrt of the biased MMD^2 in PCA-50 of real test cells, kernel sum_s exp(-|x-y|^2 / s^2) over "
           "s in {m/2, m, 2m}, m = median distance of real cells to their 25 nearest neighbours",
           per_cluster="mean", primary=True),
    # hvg-pca30-v1: CFGen-style distribution distances
    Metric("w1", "W1", "lower", "hvg-pca30", f"{_M}.ot:wasserstein1",
           "exact 1-Wasserstein distance, min over transport plans P (uniform marginals) of "
           "sum_ij P_ij |x_i - y_j| (ot.emd2, Euclidean cost)",
           per_cluster="weighted", two_sample=True, primary=True),
    Metric("w2", "W2", "lower", "hvg-pca30", f"{_M}.ot:wasserstein2",
           "exact 2-Wasserstein distance, sqrt of min over P of sum_ij P_ij |x_i - y_j|^2 (ot.emd2, squared "
           "Euclidean cost)",
           per_cluster="weighted", two_sample=True),
    Metric("mmd_rbf", "RBF MMD²", "lower", "hvg-pca30", f"{_M}.mmd:mmd_rbf",
           "biased MMD^2 with kernel exp(-gamma |x-y|^2), averaged over gamma in {2, 1, 0.5, 0.1, 0.01, 0.005}",
           per_cluster="weighted", two_sample=True, primary=True),
    Metric("energy_distance", "energy", "lower", "hvg-pca30", f"{_M}.energy:energy_distance",
           "2 E|X-Y| - E|X-X'| - E|Y-Y'|, Euclidean, means over all pairs (V-statistic)",
           per_cluster="weighted", two_sample=True),
    # biology-level metrics (every protocol records them; the same numbers under each)
    Metric("de_overlap", "DE overlap", "higher", "log1p-cp10k", f"{_M}.de:de_agreement",
           "per cluster, |R & G| / 50 for the top-50 Wilcoxon markers (cluster vs rest, scanpy) of real (R) and "
           "generated (G) cells; mean over clusters", primary=True),
    Metric("de_lfc_spearman", "DE LFC ρ", "higher", "log1p-cp10k", f"{_M}.de:de_agreement",
           "per cluster, Spearman correlation of real and generated log2 fold changes (cluster vs rest) over "
           "the real top-50 markers; mean over clusters"),
    Metric("gene_corr", "gene corr", "higher", "log1p-cp10k", f"{_M}.gene_correlation:correlation_agreement",
           "per cluster, Pearson correlation of the real and generated gene-gene Pearson correlation matrices "
           "(upper triangle) of the 200 genes most expressed in real test cells; mean over clusters",
           primary=True),
    Metric("gene_corr_all", "gene corr (all)", "higher", "log1p-cp10k",
           f"{_M}.gene_correlation:correlation_agreement",
           "gene_corr computed once over all cells (every generator, conditional or not)"),
    Metric("*_reference", "real-vs-real reference", "info", "log1p-cp10k", "scldbench.evaluation:biology_scores",
           "the metric of the same name without _reference, with held-out real cells (the positive control's) "
           "in place of generated ones: the best a generator can expect"),
    # manifold scores in the PCA-50 of log-normalised real training cells
    Metric("precision", "precision", "higher", "log-pca50-train", f"{_M}.manifold:precision_recall",
           "share of generated cells inside the union of real cells' 5-NN balls (Kynkäänniemi et al. 2019)",
           partner="recall", primary=True),
    Metric("recall", "recall", "higher", "log-pca50-train", f"{_M}.manifold:precision_recall",
           "share of real cells inside the union of generated cells' 5-NN balls", partner="precision",
           primary=True),
    Metric("density", "density", "target", "log-pca50-train", f"{_M}.manifold:density_coverage",
           "mean number of real 5-NN balls holding a generated cell, divided by 5 (Naeem et al. 2020)",
           target=1.0, partner="coverage", primary=True),
    Metric("coverage", "coverage", "higher", "log-pca50-train", f"{_M}.manifold:density_coverage",
           "share of real 5-NN balls holding at least one generated cell", partner="density", primary=True),
    # memorisation, in the same space
    Metric("memorisation_median_ratio", "memorisation ratio", "target", "log-pca50-train",
           f"{_M}.memorisation:memorisation",
           "median distance of generated cells to their nearest training cell / the same for real test cells",
           target=1.0),
    Metric("memorisation_close_fraction_excess", "close-copy excess", "target", "log-pca50-train",
           f"{_M}.memorisation:memorisation",
           "share of generated cells closer to a training cell than the 5% quantile of real test cells, / 0.05",
           target=1.0),
    Metric("memorisation_exact_copy_fraction", "exact copies", "lower", "log-pca50-train",
           f"{_M}.memorisation:memorisation", "share of generated cells at distance 0 from a training cell"),
    Metric("memorisation_memorised", "memorised", "lower", "log-pca50-train", f"{_M}.memorisation:memorisation",
           "1 when close_fraction > 3 x 0.05, else 0"),
    Metric("memorisation_*", "memorisation (raw)", "info", "log-pca50-train", f"{_M}.memorisation:memorisation",
           "the raw distances and fractions behind the memorisation scores"),
    # data properties on counts
    Metric("*_ks", "KS", "lower", "counts", f"{_M}.properties:property_distances",
           "two-sample Kolmogorov-Smirnov statistic of a per-cell or per-gene property"),
    Metric("*_trend", "trend distance", "lower", "counts", f"{_M}.properties:property_distances",
           "binned distance between real and generated gene-level trends (mean-variance, mean-zeros)"),
    Metric("*_mad", "correlation MAD", "lower", "counts", f"{_M}.properties:property_distances",
           "mean absolute difference of gene-gene correlations among the 100 most expressed genes"),
    # downstream utility
    Metric("trtr_*", "TRTR", "info", "classifier", f"{_M}.utility:train_synthetic_test_real",
           "the same classifier trained on real training cells (the reference for TSTR)"),
    Metric("tstr_macro_f1", "TSTR F1", "higher", "classifier", f"{_M}.utility:train_synthetic_test_real",
           "macro-F1 on real test cells of a classifier trained on generated labelled cells"),
    Metric("tstr_*", "TSTR", "higher", "classifier", f"{_M}.utility:train_synthetic_test_real",
           "a classifier trained on generated labelled cells, tested on real test cells"),
    Metric("augment_recall_downsampled", "recall (cut)", "info", "classifier", f"{_M}.utility:augmentation_benefit",
           "recall of the cut cluster without generated cells"),
    Metric("augment_recall_full", "recall (full)", "info", "classifier", f"{_M}.utility:augmentation_benefit",
           "recall of the cluster with all its real training cells"),
    Metric("augment_macro_f1_downsampled", "macro-F1 (cut)", "info", "classifier",
           f"{_M}.utility:augmentation_benefit", "macro-F1 without generated cells"),
    Metric("augment_*", "augmentation", "higher", "classifier", f"{_M}.utility:augmentation_benefit",
           "recall / macro-F1 after topping a cut cluster up with generated cells"),
    # costs
    Metric("fit_seconds", "fit s", "lower", "time", "scldbench.generator:Generator.fit",
           "wall-clock seconds of Generator.fit", primary=True),
    Metric("sample_seconds", "sample s", "lower", "time", "scldbench.generator:Generator.sample",
           "wall-clock seconds of the job's one Generator.sample call"),
)


def _summary(metric: Metric) -> Metric:
    how = "weighted by real test cells of each cluster" if metric.per_cluster == "weighted" else "unweighted"
    return replace(
        metric, name=f"cluster_{metric.name}_mean", label=f"cluster {metric.label}",
        formula=f"{metric.name} of each cluster's generated vs real test cells, averaged over clusters ({how})",
        per_cluster=None, two_sample=False, primary=metric.name == "rf_auc",
    )


def _expand(declared: tuple[Metric, ...]) -> tuple[Metric, ...]:
    out: list[Metric] = []
    for metric in declared:
        out.append(metric)
        if metric.per_cluster:
            out.append(_summary(metric))
    names = [m.name for m in out]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"metrics declared twice: {sorted(duplicates)}")
    return tuple(out)


#: every metric, derived cluster summaries included; exact names before patterns, first match wins
METRICS: tuple[Metric, ...] = tuple(
    sorted(_expand(_DECLARED), key=lambda m: m.is_pattern)
)


def find(name: str) -> Metric | None:
    """The declaration of metric `name` (an exact name first, else the first matching pattern)."""
    for metric in METRICS:
        if metric.name == name or (metric.is_pattern and fnmatch(name, metric.name)):
            return metric
    return None


def two_sample_metrics(space: str) -> tuple[Metric, ...]:
    """The metrics a protocol of `space` computes on each pair of point sets it compares."""
    return tuple(m for m in METRICS if m.two_sample and m.space == space)


def primary_metrics() -> tuple[str, ...]:
    return tuple(m.name for m in METRICS if m.primary)
