"""Metrics as pure functions on arrays (cells x features)."""

from scldbench.metrics.mmd import median_knn_distance, mmd_multi_kernel
from scldbench.metrics.rf_auc import rf_auc

__all__ = ["median_knn_distance", "mmd_multi_kernel", "rf_auc"]
