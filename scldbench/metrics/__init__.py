"""Metrics as pure functions on arrays (cells x features or raw counts)."""

from scldbench.metrics.aggregate import (
    ScaledScore,
    SeedSummary,
    mean_interval,
    scale_between_controls,
    scale_scores,
    summarise_seeds,
)
from scldbench.metrics.de import Markers, de_agreement, find_markers
from scldbench.metrics.energy import energy_distance
from scldbench.metrics.gene_correlation import correlation_agreement, log_expression, most_expressed
from scldbench.metrics.manifold import density_coverage, manifold_metrics, precision_recall
from scldbench.metrics.memorisation import fit_log_pca, memorisation, nearest_distances
from scldbench.metrics.mmd import median_knn_distance, mmd_multi_kernel, mmd_rbf
from scldbench.metrics.ot import wasserstein1, wasserstein2
from scldbench.metrics.properties import property_distances
from scldbench.metrics.rf_auc import rf_auc
from scldbench.metrics.utility import augmentation_benefit, train_synthetic_test_real

__all__ = [
    "Markers",
    "ScaledScore",
    "SeedSummary",
    "augmentation_benefit",
    "correlation_agreement",
    "de_agreement",
    "density_coverage",
    "energy_distance",
    "find_markers",
    "fit_log_pca",
    "log_expression",
    "manifold_metrics",
    "mean_interval",
    "median_knn_distance",
    "memorisation",
    "mmd_multi_kernel",
    "mmd_rbf",
    "most_expressed",
    "nearest_distances",
    "precision_recall",
    "property_distances",
    "rf_auc",
    "scale_between_controls",
    "scale_scores",
    "summarise_seeds",
    "train_synthetic_test_real",
    "wasserstein1",
    "wasserstein2",
]
