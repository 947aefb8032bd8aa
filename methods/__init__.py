"""The method zoo. Each method is one file; importing it registers it in ``zsl_bench.registry.METHODS``.

Third-party packages add methods through the ``zsl_bench.methods`` entry-point group.
"""

from zsl_bench.registry import METHODS

# Built-in methods register on import. Keep this list explicit (no filesystem scanning).
from . import ale, dazle, devise, eszsl, fclswgan, latem, msdn, msdnpp, sae, sje, tfvaegan, transzero  # noqa: F401
from .base import TaskInfo, ZSLMethod

__all__ = ["METHODS", "TaskInfo", "ZSLMethod"]
