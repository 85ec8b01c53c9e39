"""Generators found through the entry-point group `scldbench.generators` (built-ins register the same way)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from scldbench.errors import ScldbenchError, suggest
from scldbench.generator import Generator

GROUP = "scldbench.generators"

_runtime: dict[str, type[Generator]] = {}


@dataclass(frozen=True)
class GeneratorInfo:
    """A registered generator as `list_generators` finds it.

    Attributes
    ----------
    name
        The registered name (what suites and `get_generator` use).
    source
        Where it comes from: the entry point's ``module:Class``.
    cls
        The class, or None when it cannot be imported (`load_error` says why).
    load_error
        Why the class cannot be imported, or None.
    """

    name: str
    source: str
    cls: type[Generator] | None
    load_error: str | None

    @property
    def missing(self) -> list[str]:
        return self.cls.missing_requirements() if self.cls else []

    @property
    def available(self) -> bool:
        return self.cls is not None and not self.missing

    @property
    def hint(self) -> str:
        if self.cls is None:
            return f"cannot be imported: {self.load_error}"
        return self.cls.install_hint() if self.missing else ""


def register(name: str, cls: type[Generator]) -> None:
    """Register a generator class in this process (for notebooks and tests; packages use the entry point).

    Parameters
    ----------
    name
        The name suites and `get_generator` will know it by (it shadows an installed generator of that name).
    cls
        A `Generator` subclass.

    Raises
    ------
    ScldbenchError
        When `cls` is not a Generator subclass.
    """
    if not (isinstance(cls, type) and issubclass(cls, Generator)):
        raise ScldbenchError(f"{cls!r} is not a Generator subclass; subclass scldbench.Generator")
    _runtime[name] = cls


def unregister(name: str) -> None:
    _runtime.pop(name, None)


def runtime_generators() -> dict[str, type[Generator]]:
    """Generators registered in this process with `register` (worker processes register them again)."""
    return dict(_runtime)


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def _load(name: str, ep: EntryPoint) -> GeneratorInfo:
    try:
        cls = ep.load()
    except Exception as exc:  # a broken plugin stays listed with its error
        return GeneratorInfo(name, ep.value, None, f"{type(exc).__name__}: {exc}")
    if not (isinstance(cls, type) and issubclass(cls, Generator)):
        return GeneratorInfo(name, ep.value, None, f"{ep.value} is not a scldbench.Generator subclass")
    return GeneratorInfo(name, ep.value, cls, None)


def generator_names() -> list[str]:
    return sorted(set(_entry_points()) | set(_runtime))


def list_generators() -> list[GeneratorInfo]:
    """Every generator registered under the entry-point group ``scldbench.generators`` (and with `register`).

    A generator whose optional dependency is missing, or whose plugin cannot be imported, stays listed with
    `available` False and the `hint` to fix it.

    Returns
    -------
    list of GeneratorInfo
        Sorted by name; ``info.cls`` is the class, ``info.available`` whether it can run here, ``info.hint``
        what to install or fix otherwise.

    Examples
    --------
    >>> import scldbench
    >>> [info.name for info in scldbench.list_generators() if info.available]  # doctest: +SKIP
    ['activa', 'cfgen', 'copula', 'cscgan', 'nb', 'positive', 'random', ...]
    """
    eps = _entry_points()
    infos = []
    for name in generator_names():
        if name in _runtime:
            cls = _runtime[name]
            infos.append(GeneratorInfo(name, f"{cls.__module__}:{cls.__qualname__}", cls, None))
        else:
            infos.append(_load(name, eps[name]))
    return infos


def get_generator(name: str) -> type[Generator]:
    """The generator class registered as `name`.

    Parameters
    ----------
    name
        A registered name (see `list_generators` or ``scldbench list generators``).

    Returns
    -------
    type[Generator]
        The class; ``cls.create(**params)`` builds one with checked parameters, ``cls.parameters()`` lists them.

    Raises
    ------
    ScldbenchError
        When no generator has that name (close names are suggested) or its plugin cannot be imported.

    Examples
    --------
    >>> import scldbench
    >>> model = scldbench.get_generator("nb").create(seed=0)  # doctest: +SKIP
    """
    if name in _runtime:
        return _runtime[name]
    eps = _entry_points()
    if name not in eps:
        raise ScldbenchError(
            f"unknown generator {name!r}{suggest(name, generator_names())}; "
            "see `scldbench list generators`"
        )
    info = _load(name, eps[name])
    if info.cls is None:
        raise ScldbenchError(f"generator {name!r} {info.hint}")
    return info.cls
