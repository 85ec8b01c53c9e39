"""scldbench: a benchmark harness for generators of single-cell RNA-seq data."""

from scldbench.errors import ScldbenchError
from scldbench.generator import Generator
from scldbench.results import load_results

__version__ = "0.3.0"

__all__ = ["Generator", "ScldbenchError", "__version__", "load_results"]
