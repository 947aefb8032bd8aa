"""Name -> constructor lookup for methods, datasets and metrics.

Each registry is filled once, lazily, on its first lookup (``get``, ``names``, ``items``, ``in``,
iteration) by a loader that imports the modules that register into it:

- ``METHODS``: the built-in zoo (``methods/__init__.py``), then every ``zsl_bench.methods`` entry
  point, through which third-party packages add methods. A plug-in whose import fails is recorded
  as broken: asking for it by name raises a one-line :class:`ZSLError` with the import error, and
  ``zsl-bench ls methods`` lists it; every other method keeps working.
- ``DATASETS``: ``zsl_bench.data.datasets`` (names in registration order: the order of tables).
- ``METRICS``: ``zsl_bench.metrics`` (registration order: the order of result columns and tables).

Registering (``register``/``add``) never triggers a fill, so a module may register while it is
being imported by a loader. This module imports nothing from the modules it registers.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .errors import ZSLError

T = TypeVar("T")

ENTRY_POINT_GROUP = "zsl_bench.methods"


class Registry(Generic[T]):
    """A flat name -> object table. Duplicate names raise; unknown names suggest close ones.

    Args:
        kind: what is registered ("method"), used in error messages.
        loader: called once, on the first lookup, to import the modules that register here.
        ordered: list names in registration order; otherwise sorted.
    """

    def __init__(self, kind: str, loader: Callable[[Registry[T]], None] | None = None, *,
                 ordered: bool = False) -> None:
        self.kind = kind
        self.ordered = ordered
        self._loader = loader
        self._filled = loader is None
        self._items: dict[str, T] = {}
        self._broken: dict[str, str] = {}  # name -> one-line reason its module could not be imported

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            key = (name or getattr(obj, "name", None) or getattr(obj, "__name__")).lower()  # noqa: B009 (T is generic)
            if key in self._items and self._items[key] is not obj:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._items[key] = obj
            return obj

        return deco

    def add(self, name: str, obj: T) -> T:
        return self.register(name)(obj)

    def mark_broken(self, name: str, reason: str) -> None:
        """Record that ``name`` exists but could not be loaded; ``get(name)`` raises ``reason``."""
        self._broken[name.lower()] = reason

    def fill(self) -> None:
        """Run the loader if it has not run yet (lookups call this; explicit calls are harmless)."""
        if self._filled:
            return
        # Set first: a module imported by the loader may look names up while the table is filling.
        self._filled = True
        assert self._loader is not None
        try:
            self._loader(self)
        except BaseException:
            self._filled = False  # a failed built-in import is retried (and raised) on the next lookup
            raise

    def remove(self, name: str) -> T:
        """Unregister ``name`` and return what it held (tests that register a toy entry undo it)."""
        obj = self.get(name)
        del self._items[name.lower()]
        return obj

    def get(self, name: str) -> T:
        self.fill()
        key = name.lower()
        if key in self._items:
            return self._items[key]
        if key in self._broken:
            raise ZSLError(self._broken[key])
        close = difflib.get_close_matches(key, list(self._items), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ZSLError(f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(sorted(self._items))}")

    def __contains__(self, name: object) -> bool:
        self.fill()
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def names(self) -> list[str]:
        self.fill()
        return list(self._items) if self.ordered else sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._items[n]) for n in self.names()]

    def broken(self) -> dict[str, str]:
        """``{name: reason}`` of entries that failed to load (plug-ins whose import raised)."""
        self.fill()
        return dict(sorted(self._broken.items()))


# ------------------------------------------------------------------ loaders
def _load_methods(reg: Registry[Any]) -> None:
    """The built-in zoo, then the ``zsl_bench.methods`` entry points (third-party plug-ins).

    An entry point may name a module (importing it registers its methods) or a :class:`ZSLMethod`
    subclass (registered under the entry point's name unless its import registered it already).
    A plug-in that fails to import is recorded under its entry-point name, not raised here: one
    broken package must not stop every other method, and the user who asks for it gets the error.
    """
    from importlib.metadata import entry_points

    importlib.import_module("methods")  # registers the built-in zoo; a failure here is a harness bug
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # any error of third-party code at import time
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            dist = getattr(getattr(ep, "dist", None), "name", None)
            where = f"entry point {ep.name} = {ep.value}" + (f" of package {dist}" if dist else "")
            reg.mark_broken(ep.name, f"method plug-in {ep.name!r} is broken ({where}, group "
                                     f"{ENTRY_POINT_GROUP}): {type(exc).__name__}"
                                     + (f": {detail}" if detail else ""))
            continue
        if isinstance(obj, type) and ep.name.lower() not in reg._items and obj not in reg._items.values():
            reg.add(ep.name, obj)


def _import_module(module: str) -> Callable[[Registry[Any]], None]:
    def load(reg: Registry[Any]) -> None:
        importlib.import_module(module)

    return load


METHODS: Registry[Any] = Registry("method", _load_methods)
DATASETS: Registry[Any] = Registry("dataset", _import_module("zsl_bench.data.datasets"), ordered=True)
METRICS: Registry[Any] = Registry("metric", _import_module("zsl_bench.metrics"), ordered=True)
