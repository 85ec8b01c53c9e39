"""SCLD's settings in one frozen dataclass: the defaults the generator's signature exposes, and their checks.

The measurements behind the defaults are in the decision log, docs/decisions/scld.md (one dated entry each).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from scldbench.errors import ScldbenchError

AE_LOSSES = ("mse", "poisson", "nb")
COUNT_SAMPLING = ("poisson", "nb", "mean")
LIBRARY_MODES = ("empirical", "latent")
DISPERSIONS = ("mle", "moments", "learned")
DISPERSION_BY = ("cluster", "gene")
ANCHORS = ("cluster", "none")
FUSIONS = ("cat", "add", "attention")
SAMPLERS = ("ddpm", "ddim")
SCHEDULES = ("linear", "cosine")
LR_SCHEDULES = ("constant", "cosine")
LATENT_CALIBRATIONS = ("mean", "spread", "none")
LATENT_SCALINGS = ("quantile", "standard")
CLIP_LATENTS = ("auto", "on", "off")
MARGINAL_CALIBRATIONS = ("quantile", "none")


@dataclass(frozen=True)
class SCLDConfig:
    # autoencoder (trained first; its latent is what diffuses)
    latent_dim: int = 64
    ae_hidden: int = 512
    ae_activation: str = "elu"
    ae_latent_activation: str = "elu"
    ae_loss: str = "poisson"
    # a short fit annealed to its end: generated cells decode latents like the training cells', and those need
    # more cell-level detail than the epoch best for unseen cells keeps (decision log, "20 epochs")
    ae_epochs: int = 20
    ae_lr: float = 1e-3
    ae_batch_size: int = 128
    ae_weight_decay: float = 0.0
    # fraction of training cells (of every cluster) the autoencoder does not fit: they pick its best epoch
    # (0: fit on every cell for all `ae_epochs`)
    ae_validation: float = 0.0
    # "cluster": the decoder's logits are offsets from the log mean profile of the cell's cluster, so the latent
    # carries within-cluster variation only; "none": the paper's plain decoder
    ae_anchor: str = "cluster"
    # how a decoded profile becomes counts, and where each cell's library size comes from
    count_sampling: str = "nb"
    # NB dispersion around the decoded means of the training cells: "mle" (maximum likelihood, fits the bulk and
    # the zeros), "moments" (matches the variance, which a few outlying cells inflate), or "learned" with
    # ae_loss="nb"; `dispersion_floor` bounds theta from below
    dispersion: str = "mle"
    dispersion_floor: float = 0.01
    # one dispersion per gene and cluster, each leaning on the all-cluster estimate as if that came from
    # `dispersion_prior_cells` more cells (steadies small clusters), or one per gene
    dispersion_by: str = "cluster"
    dispersion_prior_cells: float = 10.0
    # "latent": log library size diffuses as one more latent coordinate, so a cell's depth follows its state;
    # "empirical": drawn from the training cells of the requested cluster, independent of the latent
    library: str = "latent"
    # how latent coordinates are mapped before they diffuse: "quantile" onto a standard normal each (the ELU
    # bottleneck leaves them skewed and bounded), "standard" centred and scaled only
    latent_scaling: str = "quantile"
    # pre-guidance: cluster / global mean expression -> MLP -> embedding fused with the noisy latent
    cond_dim: int = 128
    fusion: str = "cat"
    cond_drop: float = 0.2
    # diffusion
    timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    schedule: str = "linear"
    # whether each reverse step clips its predicted clean latent to the training latents' range: "auto" clips with the
    # cosine schedule, whose first reverse steps divide the noise prediction's error by sqrt(alpha_bar) (5e-5) and,
    # unclipped, send draws off to 1e3-1e4; with the linear schedule clipping scored worse (decision log, "clipped")
    clip_latents: str = "auto"
    denoiser_channels: list[int] = field(default_factory=lambda: [512, 256])
    time_dim: int = 128
    dropout: float = 0.1
    batch_size: int = 128
    steps: int = 20_000
    lr: float = 1e-3
    # the denoiser's learning rate over its steps: "constant" (the paper's AdamW as is) or "cosine", decayed to
    # zero by the last step (decision log, "learning rate")
    lr_schedule: str = "constant"
    # > 0: sample with an exponential moving average of the denoiser's weights (0: the last step's; decision log)
    ema_decay: float = 0.0
    # sampling
    sampler: str = "ddpm"
    ddim_steps: int = 50
    # DDIM's eta: 0 deterministic, 1 fresh noise at every kept step as ancestral sampling adds (it matched
    # DDPM's quality at 50 steps where eta 0 did not; decision log, "DDIM-50")
    ddim_eta: float = 1.0
    guidance: float = 0.0
    # "mean": after training, latents sampled for the training cells' clusters are compared with those cells' own
    # latents, and each cluster's mean gap (shrunk by n / (n + calibration_prior_cells)) is added to its later
    # samples; "spread" also widens (or narrows) samples about their cluster's training mean by the factor at which
    # that draw's within-cluster expression variance matches the training cells'; estimated with the configured
    # sampler at `guidance`, applied only at that guidance (decision log, "mean offsets", "spread")
    latent_calibration: str = "spread"
    calibration_prior_cells: float = 10.0
    # a fixed spread factor when latent_calibration is "mean" or "none" (1: as sampled)
    latent_spread: float = 1.0
    sample_batch_size: int = 1024
    # "quantile": after the scorer, a fresh draw of `marginal_draw` cells per cluster is compared gene by gene with the
    # training cells, and later samples at `guidance` are quantile-mapped, cluster by cluster, from the draw's
    # distribution of each gene's normalised expression onto the training cells' (`marginal_levels` quantiles of the
    # non-zero values plus the share of zeros; scldbench/scld/marginals.py, measured in the decision log). The draw is
    # large on purpose: one cell per training cell carries as much noise per gene as the bias being corrected.
    # "none": genes as the decoder and count model give them
    marginal_calibration: str = "quantile"
    marginal_levels: int = 32
    marginal_draw: int = 512
    # post-guidance scorer
    scorer: bool = True
    keep_fraction: float = 0.8
    scorer_hidden: int = 256
    # a short fit: 30 epochs tell every training cell apart and rank new cells worse (decision log, "scorer")
    scorer_epochs: int = 5
    # > 0: hold out this fraction of real and generated cells and keep the epoch that ranks them best
    scorer_validation: float = 0.0
    # > 0: the scorer reads this many principal components of the real training cells' log expression, not every
    # gene (measured worse at the CPU suites' sizes; decision log, "scorer")
    scorer_components: int = 0
    scorer_lr: float = 1e-3
    queue_size: int = 4
    mixed_precision: bool = True

    def __post_init__(self) -> None:
        choices = {
            "ae_loss": AE_LOSSES,
            "count_sampling": COUNT_SAMPLING,
            "library": LIBRARY_MODES,
            "dispersion": DISPERSIONS,
            "dispersion_by": DISPERSION_BY,
            "ae_anchor": ANCHORS,
            "fusion": FUSIONS,
            "sampler": SAMPLERS,
            "schedule": SCHEDULES,
            "lr_schedule": LR_SCHEDULES,
            "latent_calibration": LATENT_CALIBRATIONS,
            "latent_scaling": LATENT_SCALINGS,
            "clip_latents": CLIP_LATENTS,
            "marginal_calibration": MARGINAL_CALIBRATIONS,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ScldbenchError(f"scld: {key}={getattr(self, key)!r} is not one of {', '.join(allowed)}")
        if self.dispersion == "learned" and self.ae_loss != "nb":
            raise ScldbenchError(
                "scld: dispersion='learned' needs ae_loss='nb'; use dispersion='mle' or 'moments' otherwise"
            )
        if self.ae_anchor == "cluster" and self.ae_loss == "mse":
            raise ScldbenchError("scld: ae_anchor='cluster' needs ae_loss 'poisson' or 'nb'; use ae_anchor='none'")
        if self.dispersion_prior_cells < 0:
            raise ScldbenchError(f"scld: dispersion_prior_cells must be >= 0, got {self.dispersion_prior_cells}")
        if self.calibration_prior_cells < 0:
            raise ScldbenchError(f"scld: calibration_prior_cells must be >= 0, got {self.calibration_prior_cells}")
        if self.latent_spread <= 0:
            raise ScldbenchError(f"scld: latent_spread must be > 0, got {self.latent_spread}")
        if self.latent_calibration == "spread" and self.latent_spread != 1.0:
            raise ScldbenchError(
                "scld: latent_spread is fitted when latent_calibration='spread'; "
                "set latent_calibration='mean' to choose it yourself"
            )
        if self.marginal_draw < 2:
            raise ScldbenchError(f"scld: marginal_draw must be >= 2, got {self.marginal_draw}")
        if self.marginal_levels < 2:
            raise ScldbenchError(f"scld: marginal_levels must be >= 2, got {self.marginal_levels}")
        if self.dispersion_floor <= 0:
            raise ScldbenchError(f"scld: dispersion_floor must be > 0, got {self.dispersion_floor}")
        if not 0 <= self.ae_validation < 1:
            raise ScldbenchError(f"scld: ae_validation must be in [0, 1), got {self.ae_validation}")
        if not 0 < self.keep_fraction <= 1:
            raise ScldbenchError(f"scld: keep_fraction must be in (0, 1], got {self.keep_fraction}")
        if self.scorer_components < 0:
            raise ScldbenchError(f"scld: scorer_components must be >= 0, got {self.scorer_components}")
        if not 0 <= self.scorer_validation < 1:
            raise ScldbenchError(f"scld: scorer_validation must be in [0, 1), got {self.scorer_validation}")
        if not 0 <= self.cond_drop <= 1:
            raise ScldbenchError(f"scld: cond_drop must be in [0, 1], got {self.cond_drop}")
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ScldbenchError("scld: need 0 < beta_start < beta_end < 1")
        if not 0 <= self.ddim_eta <= 1:
            raise ScldbenchError(f"scld: ddim_eta must be in [0, 1], got {self.ddim_eta}")
        if self.ddim_steps < 1 or self.ddim_steps > self.timesteps:
            raise ScldbenchError(f"scld: ddim_steps must be in [1, timesteps={self.timesteps}]")
        if not self.denoiser_channels:
            raise ScldbenchError("scld: denoiser_channels needs at least one width")
        if not 0 <= self.ema_decay < 1:
            raise ScldbenchError("scld: ema_decay must be in [0, 1)")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> SCLDConfig:
        known = {k: v for k, v in params.items() if k in cls.__dataclass_fields__}
        if "denoiser_channels" in known:
            known["denoiser_channels"] = [int(c) for c in known["denoiser_channels"]]
        return cls(**known)

    @property
    def clips_latents(self) -> bool:
        return self.clip_latents == "on" or (self.clip_latents == "auto" and self.schedule == "cosine")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
