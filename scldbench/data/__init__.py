"""Named datasets, readers for user files, and the protocol's preparation (QC, labels, split)."""

from scldbench.data.datasets import DATASETS, load_dataset
from scldbench.data.prepare import PreparedData, PrepareSettings, prepare

__all__ = ["DATASETS", "PrepareSettings", "PreparedData", "load_dataset", "prepare"]
