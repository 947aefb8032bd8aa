"""The method zoo. Each method is one file; importing it registers it in ``zsl_bench.registry.METHODS``.

The registry imports this package on its first lookup (``zsl_bench.registry``); third-party packages
add methods through the ``zsl_bench.methods`` entry-point group. The contract a method implements is
``zsl_bench.contract``.
"""

# Built-in methods register on import. Keep this list explicit (no filesystem scanning).
from . import ale, dazle, devise, eszsl, fclswgan, latem, msdn, msdnpp, sae, sje, tfvaegan, transzero  # noqa: F401
