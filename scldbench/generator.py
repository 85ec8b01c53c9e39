"""The Generator contract: public `fit`/`sample`/`save`/`load` here, the model in a subclass's `_fit`/`_sample`.

A plugin author subclasses `Generator`, writes `_fit` and `_sample`, and registers the class under the
entry-point group `scldbench.generators`. Validation, seeding, timing and output checks happen here once.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import pickle
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from scldbench.data.layers import FIT_CHOICE, check_counts_in, with_counts_from
from scldbench.device import resolve_device
from scldbench.errors import ScldbenchError, suggest
from scldbench.resources import Usage, track_usage
from scldbench.seeding import seed_everything

LabelRequest = str | int | Sequence[Any] | Mapping[Any, int] | None
SampleOutput = np.ndarray | sp.spmatrix | tuple[Any, np.ndarray]


def largest_remainder(n: int, proportions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Whole counts summing to `n`, each within one of n * proportion (ties for the last cells broken at random)."""
    share = n * np.asarray(proportions, dtype=np.float64) / np.sum(proportions)
    counts = np.floor(share).astype(np.int64)
    remainder = share - counts
    order = np.lexsort((rng.random(remainder.size), -remainder))
    counts[order[: n - int(counts.sum())]] += 1
    return counts


_STATE_FILE = "state.pt"
_META_FILE = "generator.json"

#: what the base class's `fit` records beside a subclass's fitted state (genes, labels, the fit's cost, and how many
#: samples were drawn, which the next unseeded sample's seed follows); `save` stores these with the fitted state
BASE_FITTED_STATE = ("var_names", "labels_key", "label_categories", "label_proportions", "fit_usage",
                     "_n_samples_drawn")


def is_fitted_name(name: str) -> bool:
    """Whether `name` is fitted state by its name: one trailing underscore, as in scikit-learn and scvi-tools."""
    return name.endswith("_") and not name.endswith("__") and not name.startswith("_")


class Generator(ABC):
    """Base class of every generator of single-cell count data."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: can generate cells of a requested label
    conditional: ClassVar[bool] = False
    #: `sample(..., guidance=w)` changes what comes out
    supports_guidance: ClassVar[bool] = False
    #: runs but is impractically slow without a GPU
    needs_gpu: ClassVar[bool] = False
    #: never touches a GPU: its jobs are fitted, sampled and scored on the CPU whatever `--device` says, and ask a
    #: Ray cluster for no GPU
    cpu_only: ClassVar[bool] = False
    #: a control that is fitted on held-out real cells that no other generator sees
    uses_holdout: ClassVar[bool] = False
    #: importable modules this generator needs beyond scldbench's own dependencies
    requires: ClassVar[tuple[str, ...]] = ()
    #: pip extra that installs `requires`
    extra: ClassVar[str | None] = None
    #: fitted torch modules that `save` stores as weights (`state_dict`) and `load` rebuilds with `_build_module`;
    #: any other fitted module is stored whole, through the safe loader's allow-list
    weight_modules: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, seed: int = 0, device: str = "auto") -> None:
        self.seed = int(seed)
        self.device_name = device
        self.var_names: pd.Index | None = None
        self.labels_key: str | None = None
        self.label_categories: list[Any] = []
        self.label_proportions: np.ndarray = np.zeros(0)
        self.fit_usage: Usage | None = None
        self.sample_usage: Usage | None = None
        self._n_samples_drawn = 0
        self._unsaved_state: list[str] = []

    # ----------------------------------------------------------------- capabilities and parameters
    @classmethod
    def missing_requirements(cls) -> list[str]:
        return [m for m in cls.requires if importlib.util.find_spec(m) is None]

    @classmethod
    def install_hint(cls) -> str:
        return f"pip install 'scldbench[{cls.extra}]'" if cls.extra else f"pip install {' '.join(cls.requires)}"

    @classmethod
    def parameters(cls) -> dict[str, Any]:
        """Constructor parameters and their defaults (what a suite file may set)."""
        params: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            if "__init__" not in vars(klass):
                continue
            for p in inspect.signature(klass.__init__).parameters.values():
                if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
                    params[p.name] = None if p.default is inspect.Parameter.empty else p.default
        return params

    @classmethod
    def create(cls, **params: Any) -> Generator:
        """Construct with a clear error for parameters the class does not have."""
        missing = cls.missing_requirements()
        if missing:
            raise ScldbenchError(
                f"generator {cls.name!r} needs {', '.join(missing)} which is not installed; run {cls.install_hint()}"
            )
        known = cls.parameters()
        for key in params:
            if key not in known:
                raise ScldbenchError(
                    f"generator {cls.name!r} has no parameter {key!r}{suggest(key, known)}; "
                    f"known parameters: {', '.join(sorted(known))}"
                )
        return cls(**params)

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k, v) for k, v in self.parameters().items() if k != "device"} | {
            "device": self.device_name
        }

    @property
    def device(self) -> torch.device:
        return resolve_device(self.device_name)

    @property
    def is_fitted(self) -> bool:
        return self.var_names is not None

    @property
    def n_genes(self) -> int:
        return 0 if self.var_names is None else len(self.var_names)

    # ----------------------------------------------------------------- fit
    def fit(self, adata: ad.AnnData, labels_key: str | None = None, layer: str | None = None) -> Generator:
        """Learn from the raw counts of `adata`.

        Parameters
        ----------
        adata
            Cells x genes (sparse allowed). The counts are read from `adata.X`, or from `adata.layers[layer]`.
        labels_key
            Column of `adata.obs` holding the labels that conditional sampling can ask for; None fits without
            labels (sampling is then unconditional).
        layer
            The layer holding raw counts, e.g. ``"counts"`` when `X` holds log-normalised values (the usual scanpy
            layout), or ``"raw"`` for `adata.raw` (with all of its genes) when there is no layer of that name;
            None reads `X`.

        Returns
        -------
        Generator
            `self`, fitted (`fit_usage` holds the time and memory the fit took).

        Raises
        ------
        ScldbenchError
            When the matrix does not hold raw counts (non-integer, negative or non-finite values), the layer or the
            label column does not exist, or labels are missing.

        Examples
        --------
        >>> import scldbench
        >>> model = scldbench.get_generator("nb").create(seed=0)  # doctest: +SKIP
        >>> model.fit(adata, labels_key="cell_type", layer="counts")  # doctest: +SKIP
        """
        if not isinstance(adata, ad.AnnData):
            raise ScldbenchError(f"fit expects an AnnData, got {type(adata).__name__}; wrap arrays in anndata.AnnData")
        if adata.n_obs < 2 or adata.n_vars < 1:
            raise ScldbenchError(f"fit needs at least 2 cells and 1 gene, got {adata.n_obs} x {adata.n_vars}")
        counts = with_counts_from(adata, layer)  # an unknown layer is refused here, naming the layers there are
        check_counts_in(adata, layer, "adata", FIT_CHOICE)
        adata = counts
        labels = None
        if labels_key is not None:
            if labels_key not in adata.obs:
                raise ScldbenchError(
                    f"label column {labels_key!r} is not in adata.obs{suggest(labels_key, adata.obs.columns)}; "
                    f"available: {', '.join(map(str, adata.obs.columns)) or 'none'}"
                )
            series = adata.obs[labels_key]
            if series.isna().any():
                raise ScldbenchError(f"label column {labels_key!r} has missing values; fill or drop those cells")
            labels = series.astype(str).to_numpy()
            cats, counts = np.unique(labels, return_counts=True)
            self.label_categories = cats.tolist()
            self.label_proportions = counts / counts.sum()
        else:
            self.label_categories, self.label_proportions = [], np.zeros(0)
        self.labels_key = labels_key
        self.var_names = adata.var_names.copy()
        self._rng = seed_everything(self.seed)
        self._n_samples_drawn = 0
        before = set(vars(self))
        with track_usage() as usage:
            self._fit(adata, labels)
        self.fit_usage = usage
        # public attributes that fit added under a name `save` does not store; `save` refuses while there are any
        self._unsaved_state = sorted(k for k in vars(self) if k not in before and not k.startswith("_")
                                     and not is_fitted_name(k))
        return self

    # ----------------------------------------------------------------- sample
    def sample(
        self,
        n_cells: int,
        labels: LabelRequest = None,
        guidance: float | None = None,
        seed: int | None = None,
    ) -> ad.AnnData:
        """Generate cells in the gene space of the training data.

        Parameters
        ----------
        n_cells
            How many cells to generate.
        labels
            For conditional generators: one label for every cell, a label per cell, or a mapping label -> count
            (adding up to `n_cells`). None samples unconditionally (the training label proportions, for generators
            that know labels).
        guidance
            Guidance weight for generators that support it (`supports_guidance`); None uses the generator's default.
        seed
            Seed of this sample; None takes the fit seed plus the number of samples drawn so far, so repeated calls
            differ but a rerun of the same calls repeats them.

        Returns
        -------
        anndata.AnnData
            `n_cells` x genes of non-negative finite values (the training `var_names`), obs names
            ``<generator>-<seed>-<i>`` (unique per sample), ``obs[labels_key]`` when the cells have labels, and
            ``uns["generator"]``.

        Raises
        ------
        ScldbenchError
            When the generator is not fitted, a label is unknown, labels are asked of an unconditional generator,
            guidance of one without it, or the model returns a wrong shape or negative values.

        Examples
        --------
        >>> cells = model.sample(500, labels={"B cell": 200, "T cell": 300}, seed=1)  # doctest: +SKIP
        >>> cells.obs_names[0]  # doctest: +SKIP
        'nb-1-0'
        """
        if not self.is_fitted:
            raise ScldbenchError(f"generator {self.name!r} is not fitted; call fit() or load() first")
        if int(n_cells) != n_cells or n_cells < 1:
            raise ScldbenchError(f"n_cells must be a positive integer, got {n_cells!r}")
        n_cells = int(n_cells)
        per_cell = self._resolve_labels(n_cells, labels)
        if guidance is not None and not self.supports_guidance:
            raise ScldbenchError(f"generator {self.name!r} does not support guidance; leave guidance unset")
        if seed is None:
            seed = self.seed + 1 + self._n_samples_drawn
        self._n_samples_drawn += 1
        self._rng = seed_everything(seed)
        with track_usage() as usage:
            out = self._sample(n_cells, per_cell, guidance)
        self.sample_usage = usage
        return self._wrap_output(out, n_cells, per_cell, seed)

    def _resolve_labels(self, n_cells: int, labels: LabelRequest) -> np.ndarray | None:
        if labels is None:
            return None
        if not self.conditional:
            raise ScldbenchError(f"generator {self.name!r} is not conditional; sample without labels")
        if not self.label_categories:
            raise ScldbenchError(f"generator {self.name!r} was fitted without labels; pass labels_key to fit()")
        if isinstance(labels, Mapping):
            total = sum(int(v) for v in labels.values())
            if total != n_cells:
                raise ScldbenchError(f"label counts add up to {total}, but n_cells is {n_cells}; make them agree")
            per_cell = np.concatenate([np.repeat(str(k), int(v)) for k, v in labels.items()])
        elif isinstance(labels, str | int | np.integer):
            per_cell = np.repeat(str(labels), n_cells)
        else:
            per_cell = np.asarray([str(v) for v in labels])
            if per_cell.size != n_cells:
                raise ScldbenchError(f"got {per_cell.size} labels for {n_cells} cells; give one label per cell")
        unknown = sorted(str(v) for v in set(per_cell) - set(self.label_categories))
        if unknown:
            raise ScldbenchError(
                f"unknown label {unknown[0]!r}{suggest(unknown[0], self.label_categories)}; "
                f"known labels: {', '.join(self.label_categories)}"
            )
        return per_cell

    def proportional_labels(self, n_cells: int) -> np.ndarray:
        """Labels for unconditional sampling: the training label proportions as exactly as whole cells allow.

        The cells come in random order. Drawing each label at random instead would add composition noise that, at a
        few hundred cells, moves MMD more than the differences between good models do (docs/decisions/composition.md).
        """
        if not self.label_categories:
            raise ScldbenchError(f"generator {self.name!r} was fitted without labels")
        counts = largest_remainder(n_cells, self.label_proportions, self._rng)
        labels = np.repeat(np.asarray(self.label_categories, dtype=object), counts)
        return self._rng.permutation(labels).astype(str)

    def _wrap_output(self, out: SampleOutput, n_cells: int, per_cell: np.ndarray | None, seed: int) -> ad.AnnData:
        assigned = None
        if isinstance(out, tuple):
            out, assigned = out
        if isinstance(out, ad.AnnData):
            out = out.X
        if isinstance(out, torch.Tensor):
            out = out.detach().cpu().numpy()
        x = out.tocsr() if sp.issparse(out) else np.asarray(out)
        if x.shape != (n_cells, self.n_genes):
            raise ScldbenchError(
                f"generator {self.name!r} returned shape {x.shape}, expected {(n_cells, self.n_genes)}"
            )
        values = x.data if sp.issparse(x) else x
        if not np.all(np.isfinite(values)) or (values.size and values.min() < 0):
            raise ScldbenchError(f"generator {self.name!r} returned negative or non-finite values")
        # names unique within a sample and across the samples of different seeds, so that samples concatenate
        prefix = f"{self.name or type(self).__name__.lower()}-{seed}"
        obs = pd.DataFrame(index=pd.Index([f"{prefix}-{i}" for i in range(n_cells)], dtype=str))
        if assigned is not None:
            assigned = np.asarray(assigned).astype(str)
            if assigned.shape != (n_cells,):
                raise ScldbenchError(
                    f"generator {self.name!r} returned {assigned.size} labels for {n_cells} cells; return one per cell"
                )
            unseen = sorted(set(assigned) - set(self.label_categories))
            if unseen:
                raise ScldbenchError(
                    f"generator {self.name!r} returned label {unseen[0]!r}, which it never saw in training "
                    f"(known: {', '.join(self.label_categories) or 'none'}); return only labels from fit()"
                )
        labels = per_cell if per_cell is not None else assigned
        if labels is not None and self.labels_key is not None:
            obs[self.labels_key] = pd.Categorical(np.asarray(labels).astype(str), categories=self.label_categories)
        result = ad.AnnData(X=x.astype(np.float32), obs=obs, var=pd.DataFrame(index=self.var_names.copy()))
        result.uns["generator"] = self.name
        return result

    # ----------------------------------------------------------------- the model
    @abstractmethod
    def _fit(self, adata: ad.AnnData, labels: np.ndarray | None) -> None:
        """Learn from `adata.X` (raw counts); `labels` are the per-cell labels as strings, or None."""

    @abstractmethod
    def _sample(self, n_cells: int, labels: np.ndarray | None, guidance: float | None) -> SampleOutput:
        """Return an (n_cells x n_genes) non-negative matrix, optionally with the labels it assigned."""

    def diagnose(
        self, unseen: ad.AnnData, test: ad.AnnData, *, protocol: str, seed: int, n_trees: int | None = None
    ) -> dict[str, Any]:
        """Model-specific checks after fit, given real cells it never saw (`unseen`) and the real test cells.

        The runner stores what this returns under the record's `diagnostics`; the default has nothing to add.
        """
        return {}

    # ----------------------------------------------------------------- persistence
    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.needs_gpu and cls.cpu_only:
            raise TypeError(f"{cls.__name__} says both needs_gpu and cpu_only; a generator that needs a GPU uses one")
        if cls.weight_modules and cls._build_module is Generator._build_module:
            raise TypeError(f"{cls.__name__} lists weight_modules {cls.weight_modules} but does not define "
                            "_build_module(name), which load needs to rebuild them")

    def _build_module(self, name: str) -> torch.nn.Module:
        """An untrained network for the fitted attribute `name` (one of `weight_modules`), on the device it runs on.

        Its shape comes from the parameters and the fitted state outside the networks, so `load` can rebuild it
        before filling in the saved weights; `_fit` builds its networks with it too, so the two always agree.
        """
        raise TypeError(f"{type(self).__name__} has no network {name!r} to build: it lists no weight_modules")

    def _state(self) -> dict[str, Any]:
        """What `save` stores beside the parameters: the fitted state (attributes named with one trailing
        underscore) and `BASE_FITTED_STATE`; the modules named in `weight_modules` as their weights."""
        state = {k: v for k, v in vars(self).items() if k in BASE_FITTED_STATE or is_fitted_name(k)}
        for name in self.weight_modules:
            module = state.get(name)
            if module is not None:
                state[name] = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        """Restore what `_state` returned, rebuilding the `weight_modules` once the rest of the state is back."""
        weights = {name: state.pop(name) for name in self.weight_modules if name in state}
        vars(self).update(state)
        for name, tensors in weights.items():
            module = None
            if tensors is not None:
                module = self._build_module(name)
                module.load_state_dict(tensors)
                module.eval()
            setattr(self, name, module)

    def save(self, path: str | Path) -> Path:
        """Write the fitted generator to the folder `path` (created if needed), for `load`.

        Parameters
        ----------
        path
            A folder; it receives ``generator.json`` (name, class, parameters) and ``state.pt`` (the fitted state:
            the attributes named with a trailing underscore and what the base class recorded at fit).

        Returns
        -------
        pathlib.Path
            The folder written.

        Raises
        ------
        ScldbenchError
            When the generator is not fitted, its fit set attributes that are not named as fitted state (they
            would be lost), or a parameter cannot be written as JSON.
        """
        if not self.is_fitted:
            raise ScldbenchError(f"generator {self.name!r} is not fitted; nothing to save")
        if self._unsaved_state:
            name = self._unsaved_state[0]
            raise ScldbenchError(
                f"generator {self.name!r} keeps fitted state in {name!r}, which save() does not store; name fitted "
                f"state with a trailing underscore ({name + '_'!r})"
            )
        params = self.get_params()
        for key, value in params.items():
            if not _jsonable(value):
                raise ScldbenchError(
                    f"generator {self.name!r}: parameter {key}={value!r} cannot be saved as JSON; pass plain numbers, "
                    "strings, lists or None"
                )
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "name": self.name,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "params": params,
        }
        torch.save(self._state(), path / _STATE_FILE)
        (path / _META_FILE).write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> Generator:
        """Restore a generator saved by `save`, without running code the folder names.

        The class is the one `load` is called on, or else comes from the registry (the name in `generator.json`
        must be a registered generator, and its class the one recorded). `state.pt` is read with
        `torch.load(weights_only=True)`, allowing only the tensors, arrays and classes a saved generator consists
        of. Anything else is refused.

        Parameters
        ----------
        path
            A folder written by `save`.
        device
            ``"auto"``, ``"cpu"`` or ``"cuda"`` to load onto; None keeps the saved device setting.

        Returns
        -------
        Generator
            The fitted generator, ready to `sample`.

        Raises
        ------
        ScldbenchError
            When the folder holds no saved generator, names a generator that is not registered, or its state asks
            for anything a saved generator never needs or holds anything but fitted state (e.g. a folder saved in
            an older format).

        Examples
        --------
        >>> model = scldbench.Generator.load("nb-model")  # doctest: +SKIP
        """
        from scldbench.registry import get_generator

        path = Path(path)
        if not (path / _META_FILE).is_file():
            raise ScldbenchError(
                f"{path} holds no saved generator ({_META_FILE} missing); pass a folder made by save()"
            )
        try:
            meta = json.loads((path / _META_FILE).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ScldbenchError(f"{path / _META_FILE} is damaged ({exc}); save the generator again") from None
        if not (isinstance(meta, dict) and isinstance(meta.get("name"), str) and isinstance(meta.get("class"), str)
                and isinstance(meta.get("params", {}), dict)):
            raise ScldbenchError(f"{path / _META_FILE} is not a saved generator's description; save it again")
        if cls is not Generator and meta["class"] == f"{cls.__module__}:{cls.__qualname__}":
            klass: type[Generator] = cls  # the caller named the class itself: nothing is imported by name
        else:
            try:
                klass = get_generator(meta["name"])
            except ScldbenchError as exc:
                raise ScldbenchError(
                    f"{path} names generator {meta['name']!r}, which cannot be loaded: {exc}; load it with its own "
                    "class (MyGenerator.load) or register it"
                ) from None
        recorded = f"{klass.__module__}:{klass.__qualname__}"
        if meta["class"] != recorded:
            raise ScldbenchError(
                f"{path} says generator {meta['name']!r} is {meta['class']!r}, but the registered one is "
                f"{recorded!r}; refusing to load it (only folders made by save() with this installation load)"
            )
        if not issubclass(klass, cls):
            raise ScldbenchError(f"{path} holds a {klass.__name__}, not a {cls.__name__}")
        params = dict(meta.get("params", {}))
        if device is not None:
            params["device"] = device
        obj = klass.create(**params)
        state = _safe_torch_load(path / _STATE_FILE, klass, obj.device)
        if not isinstance(state, dict):
            raise ScldbenchError(f"{path / _STATE_FILE} holds no generator state; save the generator again")
        stray = sorted(str(k) for k in state if k not in BASE_FITTED_STATE and not is_fitted_name(str(k)))
        if stray:
            raise ScldbenchError(
                f"{path / _STATE_FILE} holds {stray[0]!r}, which is not fitted state (a folder saved by an older "
                "version?); fit and save the generator again"
            )
        obj._set_state(state)
        obj._rng = np.random.default_rng(obj.seed)
        return obj


#: reconstructors of arrays, indexes and plain containers that a saved state needs, by full name
_SAFE_GLOBALS = {
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.dtype", "numpy.ndarray",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "pandas.core.indexes.base._new_Index",
    "collections.OrderedDict", "builtins.set", "builtins.frozenset", "builtins.slice", "builtins.complex",
}
#: packages whose classes (never their functions) a saved state may hold
_SAFE_CLASS_PACKAGES = ("numpy.dtypes.", "pandas.core.indexes.", "scipy.sparse.", "torch.nn.modules.", "scldbench.")


def _resolve_global(name: str) -> Any:
    module, _, attr = name.rpartition(".")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _allowed_global(name: str, own: str, path: Path) -> Any:
    """The object `name` refers to, when a saved state may use it; ScldbenchError otherwise."""
    obj = None
    if name in _SAFE_GLOBALS or name.startswith((*_SAFE_CLASS_PACKAGES, own)):
        try:
            obj = _resolve_global(name)
        except (ImportError, AttributeError):
            obj = None
    if obj is None or (name not in _SAFE_GLOBALS and not isinstance(obj, type)):
        raise ScldbenchError(
            f"{path} asks to import {name!r}, which a saved generator never needs; refusing to load it "
            "(unpickling it could run code). Load only folders made by save()"
        )
    return obj


_WANTED_GLOBAL = re.compile(r"(?:GLOBAL ([\w.]+)|but got <class '([\w.]+)'>)")


def _safe_torch_load(path: Path, klass: type, device: torch.device) -> Any:
    """torch.load(weights_only=True), allowing only known reconstructors and classes (never functions) of
    numpy, pandas indexes, scipy.sparse, torch.nn, scldbench and the generator's own package."""
    if not path.is_file():
        raise ScldbenchError(f"{path} is missing; pass a folder made by save()")
    own = klass.__module__.split(".")[0] + "."
    try:
        wanted = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception as exc:
        raise ScldbenchError(f"{path} cannot be read as a saved state ({type(exc).__name__}); save it again") from None
    allowed = {name: _allowed_global(name, own, path) for name in wanted}
    for _ in range(50):  # the unpickler names one more global it needs per attempt (e.g. numpy dtype classes)
        try:
            with torch.serialization.safe_globals(list(allowed.values())):
                return torch.load(path, map_location=device, weights_only=True)
        except pickle.UnpicklingError as exc:
            match = _WANTED_GLOBAL.search(str(exc))
            name = match and (match.group(1) or match.group(2))
            if not name or name in allowed:
                raise ScldbenchError(f"{path} was refused by the safe loader ({_last_line(exc)})") from None
            allowed[name] = _allowed_global(name, own, path)
        except Exception as exc:
            raise ScldbenchError(f"{path} cannot be read as a saved state ({type(exc).__name__}: "
                                 f"{_last_line(exc)}); save it again") from None
    raise ScldbenchError(f"{path} needs too many kinds of objects to be a saved generator state; refusing it")


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    informative = [line for line in lines if "got" in line or "GLOBAL" in line]
    return (informative or lines or [type(exc).__name__])[0][:300]


def check_whole_counts(x: np.ndarray | sp.spmatrix, name: str) -> None:
    """Refuse generated values that are not whole counts, quoting the first such value and where it is."""
    values = x.data if sp.issparse(x) else np.asarray(x).ravel()
    bad = np.flatnonzero(np.abs(values - np.round(values)) > 1e-6)
    if bad.size:
        first = bad[0]
        if sp.issparse(x):
            coo = x.tocsr().tocoo()
            cell, gene = int(coo.row[first]), int(coo.col[first])
        else:
            cell, gene = divmod(int(first), x.shape[1])
        raise ScldbenchError(
            f"generator {name!r} returned non-integer values ({bad.size} of them; the first is {values[first]:g} "
            f"at cell {cell}, gene {gene}); the protocol scores whole counts, so return counts (e.g. sample them "
            "from the model's means) rather than means"
        )


def library_size_warnings(generated: np.ndarray | sp.spmatrix, largest_real: float) -> list[str]:
    """Flags for generated cells beyond any real library size (the largest total count of a real cell)."""
    totals = np.asarray(generated.sum(axis=1)).ravel()
    values = generated.data if sp.issparse(generated) else np.asarray(generated)
    flags = []
    over = int(np.sum(totals > largest_real))
    if over:
        flags.append(
            f"{over} generated cells have more counts than any real cell (largest {float(totals.max()):g}, "
            f"real largest {largest_real:g})"
        )
    if values.size and float(values.max()) > largest_real:
        flags.append(f"a single generated count ({float(values.max()):g}) exceeds every real cell's total")
    return flags


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True
