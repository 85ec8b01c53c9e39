"""SCLD's configuration: sections, presets by name, flat option names, and what enters a job's key."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

from scldbench.errors import ScldbenchError
from scldbench.runner import resolved_params
from scldbench.scld.config import SECTIONS, SCLDConfig
from scldbench.scld.generator import SCLD
from scldbench.suite import builtin_suites, load_suite


def test_cpu_preset_shrinks_the_networks_and_steps_and_keeps_everything_else():
    paper, cpu = SCLDConfig.paper().flat(), SCLDConfig.cpu().flat()
    changed = {k for k in paper if paper[k] != cpu[k]}
    assert {"latent_dim", "ae_hidden", "denoiser_channels", "steps"} <= changed
    assert (cpu["latent_dim"], cpu["ae_hidden"], cpu["denoiser_channels"], cpu["steps"]) == (16, 256, [256, 128], 4000)
    assert paper["steps"] == 20_000 and paper["sampler"] == "ddpm" and paper["timesteps"] == 1000


def test_every_option_has_one_section_and_the_generator_takes_them_by_name():
    names = [f for klass in SECTIONS.values() for f in klass.__dataclass_fields__]
    assert len(names) == len(set(names))
    model = SCLD(preset="cpu", steps=123, guidance=0.5, fusion="add")
    cfg = model.config
    assert cfg.diffusion.steps == 123 and cfg.sampling.guidance == 0.5 and cfg.diffusion.fusion == "add"
    assert cfg.autoencoder.latent_dim == 16  # the rest from the preset
    assert set(SCLD.parameters()) == {"seed", "device", "preset", *names}
    rebuilt = SCLD.create(**model.get_params())
    assert rebuilt.config == model.config and rebuilt.preset == "cpu"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"preset": "gpu"}, "unknown preset 'gpu'"),
        ({"stepz": 10}, "no setting 'stepz'"),
        ({"steps": "many"}, "steps must be a int"),
        ({"denoiser_channels": [256, "x"]}, "denoiser_channels must be a list"),
        ({"sampler": "euler"}, "sampler='euler' is not one of"),
        ({"ddim_steps": 2000}, "ddim_steps must be in"),
        ({"marginal_levels": 1}, "marginal_levels must be >= 2"),
    ],
)
def test_bad_options_are_refused_with_the_option_named(options, message):
    with pytest.raises(ScldbenchError, match=message):
        SCLD(**options)


def test_runtime_settings_stay_out_of_the_job_key_and_model_settings_do_not():
    base = resolved_params("scld", {"preset": "cpu"})
    assert "sample_batch_size" not in base and "queue_size" not in base
    assert resolved_params("scld", {"preset": "cpu", "sample_batch_size": 64, "queue_size": 2}) == base
    assert resolved_params("scld", {"preset": "cpu", "steps": 10}) != base
    assert resolved_params("scld", {"preset": "paper"}) != base


def test_builtin_suites_name_a_preset_instead_of_copying_its_sizes():
    for name in builtin_suites():
        params = load_suite(name).params.get("scld", {})
        if params:
            assert params.get("preset") in SCLDConfig.PRESETS, name
            assert not {"latent_dim", "ae_hidden", "denoiser_channels", "steps"} & set(params), name


def _toy() -> ad.AnnData:
    rng = np.random.default_rng(0)
    counts = rng.poisson(rng.gamma(2.0, 2.0, size=(1, 40)), size=(60, 40)).astype(np.float32)
    return ad.AnnData(counts, obs=pd.DataFrame({"kind": np.repeat(["a", "b"], 30)}, index=[str(i) for i in range(60)]))


def test_saved_state_is_the_fitted_state_not_the_configuration(tmp_path):
    adata = _toy()
    tiny = {"latent_dim": 4, "ae_hidden": 16, "ae_epochs": 1, "cond_dim": 8, "denoiser_channels": [16],
            "time_dim": 8, "steps": 5, "timesteps": 20, "sampler": "ddim", "ddim_steps": 5, "fit_ddim_steps": 5,
            "scorer_hidden": 8,
            "scorer_epochs": 1, "marginal_draw": 8}
    model = SCLD(preset="cpu", **tiny, seed=0, device="cpu").fit(adata, labels_key="kind")
    model.save(tmp_path / "m")
    state = torch.load(tmp_path / "m" / "state.pt", weights_only=False)
    fitted = {k for k in state if k.endswith("_") and not k.startswith("_")}
    assert fitted == {"clusters_", "autoencoder_", "count_model_", "diffusion_", "calibration_", "scorer_",
                      "marginals_", "diagnostics_"}
    assert "config" not in state and "preset" not in state
    loaded = SCLD.load(tmp_path / "m")
    assert loaded.config == model.config
    assert np.array_equal(loaded.sample(10, seed=1).X, model.sample(10, seed=1).X)


def test_marginal_draw_is_sized_from_each_clusters_training_cells():
    sized = SCLDConfig.preset("cpu").marginals
    assert sized.draw_sizes(np.array([2000, 100, 20, 3])).tolist() == [512, 400, 80, 32]
    assert SCLDConfig.preset("paper").marginals.draw_sizes(np.array([2000, 3])).tolist() == [512, 512]


def test_fit_time_draws_take_the_fit_sampler_and_samples_the_sampling_one(monkeypatch):
    import scldbench.scld.generator as module

    calls: list[tuple[str, bool]] = []
    real_ddpm, real_ddim = module.ddpm_sample, module.ddim_sample
    fitting = {"now": True}

    def recorded(kind: str, real):
        return lambda *a, **k: calls.append((kind, fitting["now"])) or real(*a, **k)

    monkeypatch.setattr(module, "ddpm_sample", recorded("ddpm", real_ddpm))
    monkeypatch.setattr(module, "ddim_sample", recorded("ddim", real_ddim))
    tiny = {"latent_dim": 4, "ae_hidden": 16, "ae_epochs": 1, "cond_dim": 8, "denoiser_channels": [16], "time_dim": 8,
            "steps": 5, "timesteps": 20, "scorer_hidden": 8, "scorer_epochs": 1, "marginal_draw": 8,
            "ddim_steps": 4, "fit_ddim_steps": 4}
    model = SCLD(preset="cpu", **tiny, seed=0, device="cpu").fit(_toy(), labels_key="kind")
    fitting["now"] = False
    model.sample(10, seed=1)
    assert {kind for kind, fit in calls if fit} == {"ddim"}
    assert {kind for kind, fit in calls if not fit} == {"ddpm"}


def test_diffusion_epochs_cap_only_shortens_training_on_small_data():
    uncapped = SCLDConfig.cpu().replace(max_diffusion_epochs=0).diffusion
    assert uncapped.training_steps(300) == uncapped.training_steps(50_000) == 4000
    capped = SCLDConfig.cpu().diffusion
    assert capped.training_steps(560) == 1838  # ceil(420 * 560 / 128)
    assert capped.training_steps(1256) == 4000  # mouse bladder's training cells: 408 passes, under the cap
    assert capped.training_steps(1618) == 4000  # pbmc3k's
    assert SCLDConfig.paper().diffusion.training_steps(300) == 20_000
    with pytest.raises(ScldbenchError, match="max_diffusion_epochs must be >= 0"):
        SCLD(max_diffusion_epochs=-1)
