"""SCLD's settings: one frozen dataclass per fitting stage, gathered in `SCLDConfig`, with named presets.

Every setting is declared once, here, with its default (the paper's configuration) and its checks. The generator
takes them by their flat names (`SCLD(preset="cpu", steps=2000)`); each name belongs to exactly one section.
The measurements behind the defaults are in the decision log, docs/decisions/scld.md (one dated entry each).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

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
LATENT_CALIBRATIONS = ("mean", "spread", "none")
LATENT_SCALINGS = ("quantile", "standard")
CLIP_LATENTS = ("auto", "on", "off")
MARGINAL_CALIBRATIONS = ("quantile", "none")
# fewest cells a sized marginal draw takes for a cluster
_MIN_MARGINAL_DRAW = 32


def _choose(section: object, **choices: tuple[str, ...]) -> None:
    for key, allowed in choices.items():
        if getattr(section, key) not in allowed:
            raise ScldbenchError(f"scld: {key}={getattr(section, key)!r} is not one of {', '.join(allowed)}")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ScldbenchError(f"scld: {message}")


@dataclass(frozen=True)
class AutoencoderConfig:
    """The autoencoder, trained first; its latent is what diffuses."""

    latent_dim: int = 64
    ae_hidden: int = 512
    ae_activation: str = "elu"
    ae_latent_activation: str = "elu"
    # the decoder's output: proportions under a Poisson ("poisson") or NB ("nb") likelihood, or log values ("mse")
    ae_loss: str = "poisson"
    # a short fit annealed to its end on every training cell: generated cells decode latents like the training
    # cells', and those need more cell-level detail than the epoch best for unseen cells keeps (decision log,
    # "20 epochs")
    ae_epochs: int = 20
    ae_lr: float = 1e-3
    ae_batch_size: int = 128
    ae_weight_decay: float = 0.0
    # "cluster": the decoder's logits are offsets from the log mean profile of the cell's cluster, so the latent
    # carries within-cluster variation only; "none": the paper's plain decoder
    ae_anchor: str = "cluster"

    def __post_init__(self) -> None:
        _choose(self, ae_loss=AE_LOSSES, ae_anchor=ANCHORS)
        _require(self.ae_anchor != "cluster" or self.ae_loss != "mse",
                 "ae_anchor='cluster' needs ae_loss 'poisson' or 'nb'; use ae_anchor='none'")
        _require(self.latent_dim >= 1 and self.ae_hidden >= 1 and self.ae_epochs >= 0,
                 "latent_dim and ae_hidden must be >= 1 and ae_epochs >= 0")


@dataclass(frozen=True)
class CountModelConfig:
    """How a decoded profile becomes counts: the count distribution, its dispersion, each cell's library size."""

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

    def __post_init__(self) -> None:
        _choose(self, count_sampling=COUNT_SAMPLING, dispersion=DISPERSIONS, dispersion_by=DISPERSION_BY,
                library=LIBRARY_MODES)
        _require(self.dispersion_prior_cells >= 0,
                 f"dispersion_prior_cells must be >= 0, got {self.dispersion_prior_cells}")
        _require(self.dispersion_floor > 0, f"dispersion_floor must be > 0, got {self.dispersion_floor}")


@dataclass(frozen=True)
class DiffusionConfig:
    """The conditional latent DDPM: latent scaling, pre-guidance, noise schedule, denoiser and its training."""

    # how latent coordinates are mapped before they diffuse: "quantile" onto a standard normal each (the ELU
    # bottleneck leaves them skewed and bounded), "standard" centred and scaled only
    latent_scaling: str = "quantile"
    # pre-guidance: cluster / global mean expression -> MLP -> embedding fused with the noisy latent
    cond_dim: int = 128
    fusion: str = "cat"
    cond_drop: float = 0.2
    timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    schedule: str = "linear"
    # whether each reverse step clips its predicted clean latent to the training latents' range: "auto" clips with
    # the cosine schedule, whose first reverse steps divide the noise prediction's error by sqrt(alpha_bar) (5e-5)
    # and, unclipped, send draws off to 1e3-1e4; with the linear schedule clipping scored worse (decision log)
    clip_latents: str = "auto"
    denoiser_channels: list[int] = field(default_factory=lambda: [512, 256])
    time_dim: int = 128
    dropout: float = 0.1
    batch_size: int = 128
    steps: int = 20_000
    # > 0: at most this many passes over the training latents, so small data do not train far beyond the passes
    # the step count was chosen at (decision log, "steps on small data"); 0: `steps` on any data
    max_diffusion_epochs: float = 0.0
    lr: float = 1e-3

    def __post_init__(self) -> None:
        _choose(self, latent_scaling=LATENT_SCALINGS, fusion=FUSIONS, schedule=SCHEDULES, clip_latents=CLIP_LATENTS)
        _require(0 <= self.cond_drop <= 1, f"cond_drop must be in [0, 1], got {self.cond_drop}")
        _require(0 < self.beta_start < self.beta_end < 1, "need 0 < beta_start < beta_end < 1")
        _require(bool(self.denoiser_channels), "denoiser_channels needs at least one width")
        _require(self.timesteps >= 1 and self.steps >= 0, "timesteps must be >= 1 and steps >= 0")
        _require(self.max_diffusion_epochs >= 0, f"max_diffusion_epochs must be >= 0, got {self.max_diffusion_epochs}")

    def training_steps(self, n_cells: int) -> int:
        """Denoiser updates for `n_cells` training cells: `steps`, fewer when `max_diffusion_epochs` caps them."""
        if self.max_diffusion_epochs <= 0:
            return self.steps
        return min(self.steps, max(1, math.ceil(self.max_diffusion_epochs * n_cells / self.batch_size)))

    @property
    def clips_latents(self) -> bool:
        return self.clip_latents == "on" or (self.clip_latents == "auto" and self.schedule == "cosine")


@dataclass(frozen=True)
class SamplingConfig:
    """How `sample` draws latents: the reverse process and the guidance weight."""

    sampler: str = "ddpm"
    ddim_steps: int = 50
    # DDIM's eta: 0 deterministic, 1 fresh noise at every kept step as ancestral sampling adds (it matched
    # DDPM's quality at 50 steps where eta 0 did not; decision log, "DDIM-50")
    ddim_eta: float = 1.0
    guidance: float = 0.0
    # the sampler of the draws the fit makes for its calibrations and scorer ("same": `sampler` with `ddim_steps`;
    # "ddim": DDIM over `fit_ddim_steps` with `ddim_eta`): on a CPU those draws, not training, took most of a fit
    # with DDPM (decision log, "fit-time draws")
    fit_sampler: str = "same"
    fit_ddim_steps: int = 50

    def __post_init__(self) -> None:
        _choose(self, sampler=SAMPLERS, fit_sampler=("same", *SAMPLERS))
        _require(0 <= self.ddim_eta <= 1, f"ddim_eta must be in [0, 1], got {self.ddim_eta}")
        _require(self.ddim_steps >= 1 and self.fit_ddim_steps >= 1, "ddim_steps and fit_ddim_steps must be >= 1")

    def fit_time(self) -> tuple[str, int]:
        """(sampler, DDIM steps) of the draws made while fitting."""
        if self.fit_sampler == "same":
            return self.sampler, self.ddim_steps
        return self.fit_sampler, self.fit_ddim_steps


@dataclass(frozen=True)
class LatentCalibrationConfig:
    """Mean offsets and spread of sampled latents per cluster, fitted once after training.

    "mean": latents sampled for the training cells' clusters are compared with those cells' own latents, and each
    cluster's mean gap (shrunk by n / (n + calibration_prior_cells)) is added to its later samples; "spread" also
    widens (or narrows) samples about their cluster's training mean by the factor at which that draw's
    within-cluster expression variance matches the training cells'. Estimated at `guidance` and applied only at
    that weight (decision log, "mean offsets", "spread").
    """

    latent_calibration: str = "spread"
    calibration_prior_cells: float = 10.0
    # a fixed spread factor when latent_calibration is "mean" or "none" (1: as sampled)
    latent_spread: float = 1.0

    def __post_init__(self) -> None:
        _choose(self, latent_calibration=LATENT_CALIBRATIONS)
        _require(self.calibration_prior_cells >= 0,
                 f"calibration_prior_cells must be >= 0, got {self.calibration_prior_cells}")
        _require(self.latent_spread > 0, f"latent_spread must be > 0, got {self.latent_spread}")
        _require(self.latent_calibration != "spread" or self.latent_spread == 1.0,
                 "latent_spread is fitted when latent_calibration='spread'; "
                 "set latent_calibration='mean' to choose it yourself")


@dataclass(frozen=True)
class ScorerConfig:
    """Post-guidance: a real/generated scorer keeps each cluster's best `keep_fraction` of draws."""

    scorer: bool = True
    keep_fraction: float = 0.8
    scorer_hidden: int = 256
    # a short fit: 30 epochs tell every training cell apart and rank new cells worse (decision log, "scorer")
    scorer_epochs: int = 5
    scorer_lr: float = 1e-3

    def __post_init__(self) -> None:
        _require(0 < self.keep_fraction <= 1, f"keep_fraction must be in (0, 1], got {self.keep_fraction}")


@dataclass(frozen=True)
class MarginalConfig:
    """Each gene's distribution within a cluster mapped onto the training cells' (after the scorer).

    "quantile": a fresh draw of `marginal_draw` cells per cluster is compared gene by gene with the training cells,
    and later samples at `guidance` are quantile-mapped, cluster by cluster, from the draw's distribution of each
    gene's normalised expression onto the training cells' (`marginal_levels` quantiles of the non-zero values plus
    the share of zeros; scldbench/scld/marginals.py). The draw is large on purpose: one cell per training cell
    carries as much noise per gene as the bias being corrected. "none": genes as decoder and count model give them.
    """

    marginal_calibration: str = "quantile"
    marginal_levels: int = 32
    marginal_draw: int = 512
    # > 0: a cluster's draw is at most this many cells per training cell of the cluster (and at least 32), below
    # `marginal_draw`: the training cells' own sketch carries their sampling noise already (decision log,
    # "fit-time draws"); 0: `marginal_draw` for every cluster
    marginal_draw_per_cell: float = 0.0

    def __post_init__(self) -> None:
        _choose(self, marginal_calibration=MARGINAL_CALIBRATIONS)
        _require(self.marginal_draw >= 2, f"marginal_draw must be >= 2, got {self.marginal_draw}")
        _require(self.marginal_draw_per_cell >= 0,
                 f"marginal_draw_per_cell must be >= 0, got {self.marginal_draw_per_cell}")
        _require(self.marginal_levels >= 2, f"marginal_levels must be >= 2, got {self.marginal_levels}")

    def draw_sizes(self, training_cells: np.ndarray) -> np.ndarray:
        """Cells to draw for each cluster, given its training cells."""
        sizes = np.full(len(training_cells), self.marginal_draw)
        if self.marginal_draw_per_cell > 0:
            scaled = np.maximum(np.ceil(self.marginal_draw_per_cell * np.asarray(training_cells)), _MIN_MARGINAL_DRAW)
            sizes = np.minimum(sizes, scaled.astype(int))
        return sizes


@dataclass(frozen=True)
class RuntimeConfig:
    """How the work is done, not what comes out of it (beyond which random numbers are drawn where)."""

    # bf16 autocast on CUDA (no effect on a CPU)
    mixed_precision: bool = True
    # cells per sampling batch, and batches generation may run ahead of the scorer
    sample_batch_size: int = 1024
    queue_size: int = 4

    def __post_init__(self) -> None:
        _require(self.sample_batch_size >= 1 and self.queue_size >= 1, "sample_batch_size and queue_size must be >= 1")


#: settings that change how fast SCLD runs, never the distribution it samples from: they stay out of job keys
RUNTIME_OPTIONS = ("sample_batch_size", "queue_size")


@dataclass(frozen=True)
class SCLDConfig:
    """Every SCLD setting, by stage. `SCLDConfig.paper()` is the paper's configuration, `cpu()` sized for 2 cores."""

    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    counts: CountModelConfig = field(default_factory=CountModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    calibration: LatentCalibrationConfig = field(default_factory=LatentCalibrationConfig)
    scoring: ScorerConfig = field(default_factory=ScorerConfig)
    marginals: MarginalConfig = field(default_factory=MarginalConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    PRESETS: ClassVar[tuple[str, ...]] = ("paper", "cpu")

    def __post_init__(self) -> None:
        _require(self.counts.dispersion != "learned" or self.autoencoder.ae_loss == "nb",
                 "dispersion='learned' needs ae_loss='nb'; use dispersion='mle' or 'moments' otherwise")
        used = ("ddim_steps", "fit_ddim_steps") if self.sampling.fit_sampler == "ddim" else ("ddim_steps",)
        for key in used:
            _require(getattr(self.sampling, key) <= self.diffusion.timesteps,
                     f"{key} must be in [1, timesteps={self.diffusion.timesteps}]")

    # ----------------------------------------------------------------- presets
    @classmethod
    def paper(cls) -> SCLDConfig:
        """The paper's configuration (latent 64, widths 512 and (512, 256), 20,000 steps, DDPM) with the changes
        the decision log records."""
        return cls()

    @classmethod
    def cpu(cls) -> SCLDConfig:
        """Sized for two CPU cores: latent 16, autoencoder width 256, denoiser (256, 128), 4,000 diffusion steps
        and at most 420 passes over the training latents; the fit's own draws by DDIM-50, the marginal draw at
        most 4 cells per training cell."""
        return cls.paper().replace(
            latent_dim=16, ae_hidden=256, denoiser_channels=[256, 128], steps=4000,
            # the passes 4,000 steps make on the data they were chosen on (decision log, "steps on small data")
            max_diffusion_epochs=420.0,
            # the fit's own draws with DDIM-50 and sized from the data (decision log, "fit-time draws")
            fit_sampler="ddim", marginal_draw_per_cell=4.0,
        )

    @classmethod
    def preset(cls, name: str, **options: Any) -> SCLDConfig:
        """The named preset with `options` (flat setting names) replaced."""
        if name not in cls.PRESETS:
            raise ScldbenchError(f"scld: unknown preset {name!r}; known presets: {', '.join(cls.PRESETS)}")
        return getattr(cls, name)().replace(**options)

    # ----------------------------------------------------------------- flat names
    @classmethod
    def option_sections(cls) -> dict[str, str]:
        """Each flat setting name -> the section that holds it."""
        return {f.name: name for name, klass in SECTIONS.items() for f in fields(klass)}

    def replace(self, **options: Any) -> SCLDConfig:
        """A copy with settings replaced by their flat names; unknown names and wrong types are refused."""
        sections = self.option_sections()
        changes: dict[str, dict[str, Any]] = {}
        for key, value in options.items():
            if key not in sections:
                raise ScldbenchError(f"scld: no setting {key!r}; known settings: {', '.join(sorted(sections))}")
            changes.setdefault(sections[key], {})[key] = _typed(key, value, getattr(self.section(sections[key]), key))
        return dataclasses.replace(
            self, **{name: dataclasses.replace(self.section(name), **values) for name, values in changes.items()}
        )

    def section(self, name: str) -> Any:
        return getattr(self, name)

    def flat(self) -> dict[str, Any]:
        """Every setting by its flat name (lists copied)."""
        return {f.name: _copy(getattr(self.section(name), f.name)) for name, klass in SECTIONS.items()
                for f in fields(klass)}


#: SCLDConfig's sections by field name, in fitting order
SECTIONS: dict[str, type] = {
    "autoencoder": AutoencoderConfig,
    "counts": CountModelConfig,
    "diffusion": DiffusionConfig,
    "sampling": SamplingConfig,
    "calibration": LatentCalibrationConfig,
    "scoring": ScorerConfig,
    "marginals": MarginalConfig,
    "runtime": RuntimeConfig,
}


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def _typed(key: str, value: Any, like: Any) -> Any:
    """`value` as the type of the preset's `like`; ints pass as floats, lists of ints stay lists of ints."""
    if isinstance(like, bool):
        ok = isinstance(value, bool)
    elif isinstance(like, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(like, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(like, list):
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        value = [int(v) for v in value] if ok else value
    else:
        ok = isinstance(value, type(like))
    if not ok:
        raise ScldbenchError(f"scld: {key} must be a {type(like).__name__}, got {value!r}")
    return value
