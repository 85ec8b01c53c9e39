"""Loading a saved generator runs no code the folder names: registered classes only, weights_only unpickling."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from scldbench.errors import ScldbenchError
from scldbench.generator import Generator
from scldbench.registry import get_generator

MARKER = "scldbench-pwned"


class Payload:
    """Unpickling this runs a command; a safe loader must refuse it before it does."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.target}",))


@pytest.fixture()
def saved(tmp_path, counts):
    model = get_generator("nb").create(seed=0).fit(counts, "group")
    return model, model.save(tmp_path / "nb")


def test_a_saved_generator_loads_back(saved):
    model, path = saved
    loaded = Generator.load(path)
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(loaded.sample(20, seed=1).X.toarray(), model.sample(20, seed=1).X.toarray())


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"name": "evil", "class": "os:system", "params": {}}, "names generator 'evil', which cannot be loaded"),
        ({"name": "nb", "class": "os:system", "params": {}}, "but the registered one is"),
        ([1, 2], "is not a saved generator's description"),
    ],
)
def test_a_description_naming_other_code_is_refused(saved, meta, message):
    _, path = saved
    (path / "generator.json").write_text(json.dumps(meta))
    with pytest.raises(ScldbenchError, match=message):
        Generator.load(path)


def test_a_state_holding_a_pickled_object_is_refused_without_running_it(saved, tmp_path):
    _, path = saved
    target = tmp_path / MARKER
    torch.save({"var_names": Payload(str(target))}, path / "state.pt")
    with pytest.raises(ScldbenchError, match=r"asks to import '(posix|os|nt).system'.*refusing to load it"):
        Generator.load(path)
    assert not target.exists()


def test_a_state_naming_a_function_of_an_allowed_package_is_refused(saved, tmp_path):
    _, path = saved

    class Sneaky:
        def __reduce__(self):
            from scldbench.data.cache import cache_dir

            return (cache_dir, ("x",))

    torch.save({"x": Sneaky()}, path / "state.pt")
    with pytest.raises(ScldbenchError, match="scldbench.data.cache.cache_dir"):
        Generator.load(path)


def test_a_state_holding_more_than_fitted_state_is_refused(saved):
    _, path = saved
    state = torch.load(path / "state.pt", weights_only=False)
    torch.save(state | {"method": "moments"}, path / "state.pt")  # a parameter: those come from generator.json
    with pytest.raises(ScldbenchError, match="holds 'method', which is not fitted state.*save the generator again"):
        Generator.load(path)


def test_a_truncated_state_is_one_line(saved):
    _, path = saved
    data = (path / "state.pt").read_bytes()
    (path / "state.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(ScldbenchError, match="state.pt"):
        Generator.load(path)


def test_a_generator_listing_networks_it_cannot_rebuild_is_refused_when_defined():
    with pytest.raises(TypeError, match="does not define _build_module"):
        type("Forgetful", (Generator,), {"weight_modules": ("net_",)})
