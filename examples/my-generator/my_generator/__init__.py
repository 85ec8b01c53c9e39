"""An example scldbench plugin (see docs/plugins.md)."""

from my_generator.cluster_poisson import ClusterPoisson

__all__ = ["ClusterPoisson"]
