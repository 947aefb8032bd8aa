"""The method zoo. Each method is one file; importing it registers it in ``zsl_bench.registry.METHODS``.

Third-party packages add methods through the ``zsl_bench.methods`` entry-point group.
"""

from zsl_bench.registry import METHODS

from .base import TaskInfo, ZSLMethod

# Built-in methods register on import. Keep this list explicit (no filesystem scanning).
_BUILTIN = [
    "ale", "eszsl",  # issue 3
    "msdn", "msdnpp",  # issue 4
    "devise", "sje", "sae", "latem", "fclswgan", "tfvaegan", "dazle", "transzero",  # issue 5
]


def _import_builtin() -> None:
    import importlib

    for mod in _BUILTIN:
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{mod}":
                raise


_import_builtin()

__all__ = ["METHODS", "TaskInfo", "ZSLMethod"]
