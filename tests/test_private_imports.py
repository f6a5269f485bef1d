"""No file imports another package's private names.

A name that starts with one underscore is private to the package that defines it. Every
``.py`` file of the product packages, ``benchmarks`` and ``tests`` is parsed (``ast``, nothing
is imported) and these are refused when ``pkg.mod`` belongs to a top-level package other than
the file's own:

- ``from pkg.mod import _name``;
- ``pkg.mod._name`` (``import pkg.mod``), ``alias._name`` (``import pkg.mod as alias`` or
  ``from pkg import mod``), where ``pkg.mod`` is a module (a file or package on disk; an
  attribute of an imported object, such as a named tuple's ``_replace``, is that type's API).

Run it alone with ``python tests/test_private_imports.py`` (prints each use, exit 1) or
``python -m pytest tests/test_private_imports.py``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the product packages (pyproject's ``packages.find``) and the two folders that use them
PACKAGES = ("ssd", "train", "calibration", "convert", "edge_app", "compare")
SCANNED = (*PACKAGES, "benchmarks", "tests")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _foreign(module: str, own: str) -> bool:
    top = module.split(".")[0]
    return top in PACKAGES and top != own


def _is_module(dotted: str, root: Path = ROOT) -> bool:
    path = root.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` -> ``"a.b.c"``; anything but names and attributes -> ``None``."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def private_uses(source: str, own: str, where: str = "<source>", root: Path = ROOT) -> list[str]:
    """Every use of another package's private name in ``source`` (a file of package ``own``),
    as ``where:line: text``."""
    tree = ast.parse(source, filename=where)
    aliases: dict[str, str] = {}  # local name -> the foreign module it stands for
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and _foreign(node.module, own):
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{where}:{node.lineno}: from {node.module} import {alias.name}")
                else:  # possibly a module: from convert import tflite_export
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _foreign(alias.name, own) and alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _private(node.attr)):
            continue
        base = _dotted(node.value)
        if base is None:
            continue
        head, _, rest = base.partition(".")
        module = aliases.get(head, head) + (f".{rest}" if rest else "")
        if _foreign(module, own) and _is_module(module, root):
            found.append(f"{where}:{node.lineno}: {module}.{node.attr}")
    return found


def all_private_uses(root: Path = ROOT) -> list[str]:
    found = []
    for folder in SCANNED:
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root)
            found += private_uses(path.read_text(encoding="utf-8"), folder, str(rel), root)
    return found


def test_the_check_finds_each_kind_of_private_use():
    source = (
        "import convert.pt2e\n"
        "import convert.pt2e as p\n"
        "from convert import pt2e\n"
        "from convert.pt2e import _hidden, public\n"
        "convert.pt2e._a(); p._b(); pt2e._c(); public._d\n"
        "p.__name__; p.public; convert._own\n"
    )
    found = private_uses(source, "train")
    assert sorted(line.split(": ", 1)[1] for line in found) == [
        "convert._own", "convert.pt2e._a", "convert.pt2e._b", "convert.pt2e._c", "from convert.pt2e import _hidden"]
    assert private_uses(source, "convert") == [], "a package's own private names are its own business"


def test_no_file_imports_another_packages_private_names():
    found = all_private_uses()
    assert not found, "private names of another package (make them public or keep them inside):\n" + "\n".join(found)


if __name__ == "__main__":
    uses = all_private_uses()
    print("\n".join(uses) or "no private imports across packages")
    sys.exit(1 if uses else 0)
