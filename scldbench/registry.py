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
    """Register a generator class in this process (for notebooks and tests; packages use the entry point)."""
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
