"""Name -> constructor lookup for methods, datasets and metrics.

Registration happens by explicit imports (``methods/__init__.py``, ``zsl_bench.data.datasets``)
plus the ``zsl_bench.methods`` entry-point group, through which third-party packages add methods.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .errors import ZSLError

T = TypeVar("T")
log = logging.getLogger(__name__)


class Registry(Generic[T]):
    """A flat name -> object table. Duplicate names raise; unknown names suggest close ones.

    Args:
        kind: what is registered ("method"), used in error messages.
        ordered: list names in registration order; otherwise sorted.
    """

    def __init__(self, kind: str, *, ordered: bool = False) -> None:
        self.kind = kind
        self.ordered = ordered
        self._items: dict[str, T] = {}

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

    def remove(self, name: str) -> T:
        """Unregister ``name`` and return what it held (tests that register a toy entry undo it)."""
        obj = self.get(name)
        del self._items[name.lower()]
        return obj

    def get(self, name: str) -> T:
        key = name.lower()
        if key not in self._items:
            close = difflib.get_close_matches(key, list(self._items), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ZSLError(f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(sorted(self._items))}")
        return self._items[key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def names(self) -> list[str]:
        return list(self._items) if self.ordered else sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._items[n]) for n in self.names()]


METHODS: Registry[Any] = Registry("method")
DATASETS: Registry[Any] = Registry("dataset")
METRICS: Registry[Any] = Registry("metric", ordered=True)  # the order of result rows and columns

_loaded = False


def load_all() -> None:
    """Import the built-in methods and datasets, then any entry-point plugins (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from importlib.metadata import entry_points

    import methods  # noqa: F401  (registers the method zoo)

    from . import metrics  # noqa: F401
    from .data import datasets  # noqa: F401

    for ep in entry_points(group="zsl_bench.methods"):
        try:
            ep.load()
        except Exception as exc:  # a broken plugin must not break the harness
            log.warning("could not load method plugin %s: %s", ep.name, exc)
