"""Metrics as pure functions on arrays (cells x features or raw counts)."""

from scldbench.metrics.aggregate import (
    ScaledScore,
    SeedSummary,
    mean_interval,
    scale_between_controls,
    scale_scores,
    summarise_seeds,
)
from scldbench.metrics.manifold import density_coverage, manifold_metrics, precision_recall
from scldbench.metrics.markers import MarkerOverlap, marker_overlap
from scldbench.metrics.memorisation import fit_log_pca, memorisation, nearest_distances
from scldbench.metrics.mmd import median_knn_distance, mmd_multi_kernel
from scldbench.metrics.properties import property_distances
from scldbench.metrics.rf_auc import rf_auc
from scldbench.metrics.utility import augmentation_benefit, train_synthetic_test_real

__all__ = [
    "MarkerOverlap",
    "ScaledScore",
    "SeedSummary",
    "augmentation_benefit",
    "density_coverage",
    "fit_log_pca",
    "manifold_metrics",
    "marker_overlap",
    "mean_interval",
    "median_knn_distance",
    "memorisation",
    "mmd_multi_kernel",
    "nearest_distances",
    "precision_recall",
    "property_distances",
    "rf_auc",
    "scale_between_controls",
    "scale_scores",
    "summarise_seeds",
    "train_synthetic_test_real",
]
