"""What ``zsl-bench ls methods`` shows of each built-in method, read from source without importing it.

The class attributes of a method (``name``, ``family``, ``input``, ``paper``, ``description``, with
the defaults of :class:`zsl_bench.contract.ZSLMethod`) stay the one place its listing comes from.
Importing a method imports torch (seconds to a minute on a loaded machine), so the listing reads those
attributes from the source files instead: the modules named in ``methods/__init__.py``, the classes
registered there (``@METHODS.register("key")``, ``METHODS.register("key")(Cls)`` or
``METHODS.add("key", Cls)``), literal values followed through base classes (``from .devise import
BilinearEmbedding``, ``from zsl_bench.contract import ZSLMethod``) in method-resolution order.

Anything this reader cannot follow raises :class:`StaticReadError`; ``ls methods`` then imports the
zoo instead (same table, slower). ``tests/test_speed.py`` checks the static table equals the imported
attributes for every built-in, so a new method written in an unusual way is noticed, not mislisted.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

LISTED = ("name", "family", "input", "paper", "description")


class StaticReadError(Exception):
    """The source cannot be read statically (import the zoo instead)."""


@dataclass(frozen=True)
class MethodInfo:
    key: str  # registry key
    name: str
    family: str
    input: str
    paper: str
    description: str
    module: str  # the module that registers it ("methods.sje")

    @property
    def summary(self) -> str:
        """The paper, else the description (the last column of ``ls methods``)."""
        return self.paper or self.description


@dataclass
class _Module:
    name: str  # dotted
    path: Path
    tree: ast.Module
    classes: dict[str, ast.ClassDef]
    imported: dict[str, tuple[str, str]]  # local name -> (absolute module, attribute)


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)  # a top-level name: located, not imported
    if spec is None or not spec.submodule_search_locations:
        raise StaticReadError(f"package {package!r} not found")
    return Path(next(iter(spec.submodule_search_locations)))


def _module_path(module: str) -> Path:
    head, _, rest = module.partition(".")
    if head == "zsl_bench":
        base = Path(__file__).resolve().parent
    elif head == "methods":
        base = _package_dir("methods")
    else:
        raise StaticReadError(f"base class from module {module!r} is outside the harness and the zoo")
    path = base.joinpath(*rest.split(".")) if rest else base
    for cand in (path.with_suffix(".py"), path / "__init__.py"):
        if cand.is_file():
            return cand
    raise StaticReadError(f"module {module!r} not found under {base}")


@cache
def _parse(module: str) -> _Module:
    path = _module_path(module)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, ValueError) as exc:
        raise StaticReadError(f"{path}: {exc}") from exc
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    classes: dict[str, ast.ClassDef] = {}
    imported: dict[str, tuple[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            classes[node.name] = node
        elif isinstance(node, ast.ImportFrom):
            src = node.module or ""
            if node.level:
                parts = package.split(".")
                up = parts[: len(parts) - (node.level - 1)]
                src = ".".join([*up, src] if src else up)
            for alias in node.names:
                imported[alias.asname or alias.name] = (src, alias.name)
    return _Module(module, path, tree, classes, imported)


def _literal_attrs(cls: ast.ClassDef, where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for stmt in cls.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            target, value = stmt.targets[0].id, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            target, value = stmt.target.id, stmt.value
        else:
            continue
        if target in LISTED:
            try:
                v = ast.literal_eval(value)
            except ValueError as exc:
                raise StaticReadError(f"{where}: {cls.name}.{target} is not a literal") from exc
            if not isinstance(v, str):
                raise StaticReadError(f"{where}: {cls.name}.{target} is not a string")
            out[target] = v
    return out


def _resolve_class(mod: _Module, name: str) -> tuple[_Module, ast.ClassDef]:
    if name in mod.classes:
        return mod, mod.classes[name]
    if name in mod.imported:
        src, attr = mod.imported[name]
        return _resolve_class(_parse(src), attr)
    raise StaticReadError(f"{mod.path}: class {name!r} not found")


def _mro(mod: _Module, cls: ast.ClassDef) -> list[tuple[_Module, ast.ClassDef]]:
    """C3 linearisation over the statically resolvable bases; stops at ``ZSLMethod`` (its own
    bases define none of the listed attributes)."""
    if mod.name == "zsl_bench.contract" and cls.name == "ZSLMethod":
        return [(mod, cls)]
    bases = []
    for b in cls.bases:
        if not isinstance(b, ast.Name):
            raise StaticReadError(f"{mod.path}: base of {cls.name} is not a plain name")
        bases.append(_mro(*_resolve_class(mod, b.id)))
    seqs = [s[:] for s in bases] + [[b[0] for b in bases]]
    out = [(mod, cls)]
    while any(seqs):
        seqs = [s for s in seqs if s]
        for s in seqs:
            head = s[0]
            if not any(head in t[1:] for t in seqs):
                break
        else:
            raise StaticReadError(f"{mod.path}: inconsistent bases of {cls.name}")
        out.append(head)
        for s in seqs:
            if s[0] == head:
                del s[0]
    return out


def _info(mod: _Module, cls: ast.ClassDef, key: str | None) -> MethodInfo:
    found: dict[str, str] = {}
    for m, c in _mro(mod, cls):
        for k, v in _literal_attrs(c, str(m.path)).items():
            found.setdefault(k, v)
    missing = [k for k in LISTED if k not in found]
    if missing:
        raise StaticReadError(f"{mod.path}: {cls.name} has no literal {', '.join(missing)}")
    # As Registry.register: the explicit key, else the class's name attribute, else the class name.
    key = (key or found["name"] or cls.name).lower()
    return MethodInfo(key=key, module=mod.name, **{k: found[k] for k in LISTED})


def _register_key(call: ast.expr) -> tuple[bool, str | None]:
    """``METHODS.register(...)`` -> (True, key or None)."""
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "register"
            and isinstance(call.func.value, ast.Name) and call.func.value.id == "METHODS"):
        return False, None
    if not call.args:
        return True, None
    try:
        return True, str(ast.literal_eval(call.args[0]))
    except ValueError as exc:
        raise StaticReadError("METHODS.register with a key that is not a literal") from exc


def _registered(mod: _Module) -> list[MethodInfo]:
    out = []
    for node in mod.tree.body:
        if isinstance(node, ast.ClassDef):
            for deco in node.decorator_list:
                is_reg, key = _register_key(deco)
                if is_reg:
                    out.append(_info(mod, node, key))
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            call = node.value
            is_reg, key = _register_key(call.func)
            if is_reg and len(call.args) == 1 and isinstance(call.args[0], ast.Name):
                out.append(_info(*_resolve_class(mod, call.args[0].id), key))
            elif (isinstance(call.func, ast.Attribute) and call.func.attr == "add"
                  and isinstance(call.func.value, ast.Name) and call.func.value.id == "METHODS"):
                if len(call.args) != 2 or not isinstance(call.args[1], ast.Name):
                    raise StaticReadError(f"{mod.path}: METHODS.add with arguments this reader cannot follow")
                out.append(_info(*_resolve_class(mod, call.args[1].id), str(ast.literal_eval(call.args[0]))))
        elif isinstance(node, (ast.For, ast.While, ast.If, ast.With, ast.Try)) and "METHODS" in ast.unparse(node):
            raise StaticReadError(f"{mod.path}: methods registered inside a statement this reader cannot follow")
    return out


def builtin_methods() -> list[MethodInfo]:
    """The built-in zoo's listing, sorted by registry key, without importing any method module."""
    pkg = _parse("methods")
    modules: list[str] = []
    for node in pkg.tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None:
            modules += [f"methods.{a.name}" for a in node.names]
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and getattr(node, "module", None) != "__future__":
            raise StaticReadError(f"{pkg.path}: an import this reader does not follow")
    infos = [info for m in modules for info in _registered(_parse(m))]
    return sorted(infos, key=lambda i: i.key)
