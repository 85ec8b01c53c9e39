"""CFGen-style generator: flow matching in the latent space of a negative-binomial count autoencoder."""

from scldbench.baselines.cfgen.generator import CFGen

__all__ = ["CFGen"]
