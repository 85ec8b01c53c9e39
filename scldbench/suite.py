"""Suites: TOML files naming a dataset, its preparation, the generators (with parameters) and the seeds to run.

```toml
name = "pbmc"
description = "..."
dataset = "pbmc68k"                 # a named dataset or a path
layer = "counts"                    # the layer holding raw counts (optional; default X)
fallback_dataset = "pbmc68k-mini"   # used, and stated in every output, when `dataset` cannot be had
protocols = ["scgan-v1", "hvg-pca30-v1"]  # default; the old `protocol = "x"` means ["x"]
seeds = 3                           # or a list, e.g. [0, 1, 2]
timeout_seconds = 3600             # time limit of every job (optional); a job past it is recorded as failed
generators = ["*"]                  # "*" is every registered generator; beside it, names and variants:
                                    # { name = "scld", label = "scld-add", params = { fusion = "add" },
                                    #   timeout = 600 }  (this entry's own time limit in seconds)
[prepare]                           # overrides of PrepareSettings (labels_key, n_clusters, test_fraction...)
[evaluate]                          # n_trees, per_cluster, min_cluster_cells, guidance, n_generated
[params.scld]                       # parameters for every job of that generator
[fallback_params.scgan]             # over [params] when the data is the fallback dataset (stated in every output)
```
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from scldbench.data.prepare import PrepareSettings
from scldbench.errors import ScldbenchError, suggest
from scldbench.suite_values import hints, range_problem, type_problem

TOP_KEYS = {"name", "description", "dataset", "fallback_dataset", "protocol", "protocols", "seeds", "generators",
            "prepare", "evaluate", "params", "fallback_params", "timeout_seconds", "layer"}
ENTRY_KEYS = {"name", "label", "params", "timeout"}


@dataclass(frozen=True)
class GeneratorEntry:
    name: str
    label: str
    params: dict[str, Any] = field(default_factory=dict)
    #: seconds this entry's jobs may run (None: the suite's timeout_seconds)
    timeout: float | None = None


@dataclass(frozen=True)
class EvaluateSettings:
    n_trees: int = 1000
    per_cluster: bool = True
    #: clusters with fewer real test cells than this get no per-cluster score
    min_cluster_cells: int = 10
    #: guidance weight for conditional generators that support it (None: the generator's default)
    guidance: float | None = None
    #: generated cells per job; None means as many as real test cells (the protocol's choice)
    n_generated: int | None = None
    #: the metrics beyond RF AUC and MMD (manifold, data properties, memorisation, utility)
    extra_metrics: bool = True
    #: keep generated cells in the run folder for reports
    save_samples: bool = True
    #: guidance weights to sweep for conditional generators with guidance (paper Figure 5); None skips it
    guidance_sweep: tuple[float, ...] | None = None
    #: clusters for the sweep (None: all) and cells generated per cluster and weight
    sweep_clusters: tuple[str, ...] | None = None
    sweep_cells: int = 200
    #: refit conditional generators with this cluster cut to `augment_keep` training cells and measure the
    #: recall gain from topping it up with generated cells ("rarest" picks the smallest cluster); None skips it
    augment_cluster: str | None = None
    augment_keep: int = 10


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    dataset: str
    fallback_dataset: str | None
    #: every protocol scores each job's one sample
    protocols: tuple[str, ...]
    seeds: tuple[int, ...]
    generators: tuple[GeneratorEntry, ...]
    #: "*" in the list: every registered generator runs (with default parameters) beside the entries
    include_all: bool
    prepare: dict[str, Any]
    evaluate: EvaluateSettings
    params: dict[str, dict[str, Any]]
    source: str = ""
    #: seconds every job may run unless its entry says otherwise (None: no limit)
    timeout_seconds: float | None = None
    #: the layer of the dataset holding raw counts (None: X)
    layer: str | None = None
    #: parameters over `params` for jobs on the fallback dataset (smaller budgets for small embedded data)
    fallback_params: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def protocol(self) -> str:
        """The first protocol (the one a single-protocol view shows)."""
        return self.protocols[0]

    def prepare_settings(self, defaults: dict[str, Any]) -> PrepareSettings:
        return PrepareSettings(**(defaults | self.prepare))

    def _on_fallback(self, dataset: str | None) -> bool:
        return dataset is not None and dataset == self.fallback_dataset

    def generator_params(self, entry: GeneratorEntry, dataset: str | None = None) -> dict[str, Any]:
        """The entry's parameters: the suite's `[params]`, then `[fallback_params]` when `dataset` is the
        fallback dataset, then the entry's own."""
        fallback = self.fallback_params.get(entry.name, {}) if self._on_fallback(dataset) else {}
        return self.params.get(entry.name, {}) | fallback | entry.params

    def fallback_note(self, dataset: str | None) -> str | None:
        """What `[fallback_params]` changes for a run on `dataset`, for its outputs (None: nothing)."""
        if not self.fallback_params or not self._on_fallback(dataset):
            return None
        changes = "; ".join(f"{name} " + ", ".join(f"{k}={v!r}" for k, v in table.items())
                            for name, table in sorted(self.fallback_params.items()))
        return f"suite {self.name!r} sets smaller budgets for {self.fallback_dataset!r}: {changes}"


def _fail(where: str, key: str, problem: str) -> ScldbenchError:
    return ScldbenchError(f"{where}: key {key!r}: {problem}")


def _seeds(value: Any, where: str) -> tuple[int, ...]:
    if isinstance(value, bool) or not isinstance(value, int | list):
        raise _fail(where, "seeds", f"must be a count or a list of integers, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise _fail(where, "seeds", f"must be at least 1, got {value}")
        return tuple(range(value))
    if not value or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value):
        raise _fail(where, "seeds", f"must be a non-empty list of integers of at least 0, got {value!r}")
    if len(set(value)) != len(value):
        raise _fail(where, "seeds", f"lists a seed twice: {value!r}")
    return tuple(value)


def _protocols(data: dict[str, Any], where: str) -> tuple[str, ...]:
    from scldbench.protocols import DEFAULT_PROTOCOLS, PROTOCOLS

    if "protocol" in data and "protocols" in data:
        raise _fail(where, "protocol", "give either protocol = \"name\" or protocols = [...], not both")
    key = "protocols" if "protocols" in data else "protocol"
    value = data.get(key, list(DEFAULT_PROTOCOLS))
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise _fail(where, key, f'must be a protocol name or a non-empty list of them, got {value!r}')
    for name in names:
        if name not in PROTOCOLS:
            raise _fail(where, key, f"unknown protocol {name!r}{suggest(name, PROTOCOLS)}")
    if len(set(names)) != len(names):
        raise _fail(where, key, f"names a protocol twice: {names}")
    return tuple(names)


def _timeout(value: Any, where: str, key: str) -> float | None:
    if value is None:
        return None
    problem = type_problem(value, float) or range_problem(value, "timeout")
    if problem:
        raise _fail(where, key, f"{problem} (seconds)")
    return float(value)


def _layer(value: Any, where: str) -> str | None:
    if value is None:
        return None
    problem = type_problem(value, str)
    if problem or not value.strip():
        raise _fail(where, "layer", f"{problem or f'must be a non-empty string, got {value!r}'} (the name of the "
                    "layer holding raw counts, e.g. \"counts\")")
    return value


def _generators(value: Any, where: str) -> tuple[GeneratorEntry, ...]:
    if value == "*":
        value = ["*"]
    if not isinstance(value, list) or not value:
        raise _fail(where, "generators", 'must be ["*"] or a non-empty list of names or {name, label, params} tables')
    entries = []
    for item in value:
        if item == "*":
            continue
        if isinstance(item, str):
            entries.append(GeneratorEntry(item, item))
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            unknown = set(item) - ENTRY_KEYS
            if unknown:
                raise _fail(where, "generators", f"entry {item['name']!r} has unknown keys {sorted(unknown)}; "
                            f"known: {', '.join(sorted(ENTRY_KEYS))}")
            params = item.get("params", {})
            if not isinstance(params, dict):
                raise _fail(where, "generators", f"params of {item['name']!r} must be a table")
            label = item.get("label", item["name"])
            if not isinstance(label, str) or not label.strip():
                raise _fail(where, "generators", f"label of {item['name']!r} must be a non-empty string, got {label!r}")
            timeout = _timeout(item.get("timeout"), where, f"generators.{item['name']}.timeout")
            entries.append(GeneratorEntry(item["name"], label, params, timeout))
        else:
            raise _fail(where, "generators", f"entry {item!r} must be a name or a table with a 'name'")
    labels = [e.label for e in entries]
    duplicates = sorted({x for x in labels if labels.count(x) > 1})
    if duplicates:
        raise _fail(where, "generators", f"label {duplicates[0]!r} appears twice; give variants distinct labels")
    return tuple(entries)


def _table(data: dict, key: str, where: str, allowed: set[str]) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise _fail(where, key, "must be a table")
    for k in value:
        if k not in allowed:
            known = ", ".join(sorted(allowed))
            raise _fail(where, f"{key}.{k}", f"unknown setting{suggest(k, allowed)}; known: {known}")
    return value


def _check_settings(values: dict[str, Any], settings_class: type, section: str, where: str) -> None:
    """Type and range of every value of a [prepare] or [evaluate] table, against the dataclass's annotations."""
    annotations = hints(settings_class)
    for key, value in values.items():
        problem = type_problem(value, annotations.get(key, Any)) or range_problem(value, f"{section}.{key}")
        if problem:
            raise _fail(where, f"{section}.{key}", problem)


def _check_generator_params(name: str, params: dict[str, Any], where: str, key: str) -> None:
    """Names, types and accepted values of a generator's parameters, against its constructor."""
    from scldbench.registry import generator_names, get_generator

    known = generator_names()
    if name not in known:
        raise _fail(where, key, f"unknown generator {name!r}{suggest(name, known)}; see `scldbench list generators`")
    try:
        cls = get_generator(name)
    except ScldbenchError:
        return  # a plugin that cannot be imported: its jobs fail with the reason, the others run
    accepted = cls.parameters()
    annotations: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if "__init__" in vars(klass):
            annotations |= hints(klass.__init__)
    for param, value in params.items():
        if param in ("seed", "device"):
            raise _fail(where, f"{key}.{param}", "is set by the run (seeds = ..., --device), not per generator")
        if param not in accepted:
            settable = sorted(p for p in accepted if p not in ("seed", "device"))
            raise _fail(where, f"{key}.{param}", f"generator {name!r} has no such parameter{suggest(param, accepted)}; "
                        f"known: {', '.join(settable) if settable else 'none (it takes no parameters)'}")
        problem = type_problem(value, annotations.get(param, Any))
        if problem:
            raise _fail(where, f"{key}.{param}", problem)
    if cls.missing_requirements():
        return
    try:  # constructors check accepted values (choices, ranges); they build no model
        cls.create(seed=0, device="cpu", **params)
    except (ScldbenchError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _fail(where, key, f"generator {name!r} refuses these parameters: {first}") from None


def _param_tables(data: dict[str, Any], key: str, where: str) -> dict[str, dict[str, Any]]:
    tables = data.get(key, {})
    if not isinstance(tables, dict) or not all(isinstance(v, dict) for v in tables.values()):
        raise _fail(where, key, f"must be a table of tables, e.g. [{key}.scld]")
    return tables


def parse_suite(data: dict[str, Any], where: str) -> Suite:
    for key in data:
        if key not in TOP_KEYS:
            raise _fail(where, key, f"unknown key{suggest(key, TOP_KEYS)}; known: {', '.join(sorted(TOP_KEYS))}")
    for key in ("name", "dataset"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise _fail(where, key, "is required and must be a non-empty string")
    for key in ("description", "fallback_dataset"):
        if key in data and not isinstance(data[key], str):
            raise _fail(where, key, f"must be a string, got {data[key]!r}")
    prepare = _table(data, "prepare", where, {f.name for f in fields(PrepareSettings)})
    evaluate = dict(_table(data, "evaluate", where, {f.name for f in fields(EvaluateSettings)}))
    _check_settings(prepare, PrepareSettings, "prepare", where)
    fractions = prepare.get("test_fraction", PrepareSettings.test_fraction) + prepare.get(
        "holdout_fraction", PrepareSettings.holdout_fraction)
    if fractions >= 1:
        raise _fail(where, "prepare", f"test_fraction + holdout_fraction must be less than 1, got {fractions:g}")
    if isinstance(evaluate.get("sweep_clusters"), list):  # cluster names may be written as numbers
        evaluate["sweep_clusters"] = [str(v) for v in evaluate["sweep_clusters"]]
    _check_settings(evaluate, EvaluateSettings, "evaluate", where)
    for key in ("guidance_sweep", "sweep_clusters"):
        if key in evaluate:
            if not evaluate[key]:
                raise _fail(where, f"evaluate.{key}", "must be a non-empty list")
            evaluate[key] = tuple(str(v) if key == "sweep_clusters" else float(v) for v in evaluate[key])
    evaluate_settings = EvaluateSettings(**evaluate)
    params = _param_tables(data, "params", where)
    fallback_params = _param_tables(data, "fallback_params", where)
    if fallback_params and not data.get("fallback_dataset"):
        raise _fail(where, "fallback_params", "applies to the fallback dataset, but the suite names none; add "
                    "fallback_dataset = \"...\" or drop [fallback_params]")
    protocols = _protocols(data, where)
    generators = _generators(data.get("generators", ["*"]), where)
    for key, tables in (("params", params), ("fallback_params", fallback_params)):
        for name, table in tables.items():
            _check_generator_params(name, table, where, f"{key}.{name}")
    suite = Suite(
        name=data["name"],
        description=str(data.get("description", "")),
        dataset=data["dataset"],
        fallback_dataset=data.get("fallback_dataset"),
        protocols=protocols,
        seeds=_seeds(data.get("seeds", 1), where),
        generators=generators,
        include_all="*" in data.get("generators", ["*"]),
        prepare=prepare,
        evaluate=evaluate_settings,
        params=params,
        timeout_seconds=_timeout(data.get("timeout_seconds"), where, "timeout_seconds"),
        layer=_layer(data.get("layer"), where),
        fallback_params=fallback_params,
    )
    for entry in generators:
        for dataset in dict.fromkeys((None, suite.fallback_dataset)):
            _check_generator_params(entry.name, suite.generator_params(entry, dataset), where,
                                    f"generators.{entry.label}")
    return suite


def builtin_suites() -> dict[str, str]:
    """Name -> TOML text of the suites shipped in the `scldbench.suites` package."""
    folder = resources.files("scldbench.suites")
    return {p.name[:-5]: p.read_text() for p in folder.iterdir() if p.name.endswith(".toml")}


def load_suite(name_or_path: str | Path) -> Suite:
    """A suite, checked in full (keys, types, ranges, generator names and parameters) before anything runs.

    Parameters
    ----------
    name_or_path
        A built-in suite name (``scldbench list suites``) or the path of a .toml suite file.

    Returns
    -------
    Suite
        The parsed suite; pass it to `RunRequest` and `run_suite`.

    Raises
    ------
    ScldbenchError
        One line naming the file, the key and the problem.

    Examples
    --------
    >>> import scldbench
    >>> scldbench.load_suite("smoke").seeds  # doctest: +SKIP
    """
    name_or_path = str(name_or_path)
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise ScldbenchError(f"suite file {path} does not exist; give a .toml path or a built-in suite name")
        text, where = path.read_text(), str(path)
    else:
        suites = builtin_suites()
        if name_or_path not in suites:
            raise ScldbenchError(
                f"unknown suite {name_or_path!r}{suggest(name_or_path, suites)}; "
                f"built-in suites: {', '.join(sorted(suites))}, or give a .toml path"
            )
        text, where = suites[name_or_path], f"suites/{name_or_path}.toml"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScldbenchError(f"{where}: not valid TOML ({exc}); fix the syntax") from exc
    suite = parse_suite(data, where)
    return Suite(**{f.name: getattr(suite, f.name) for f in fields(Suite) if f.name != "source"}, source=text)
