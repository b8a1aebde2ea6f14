"""A default corpus that every machine has: the docstrings of the installed Python standard library.

Docstrings are read with :mod:`ast` from the source files, so no module is imported (``antigravity``
would open a browser). Each public module, class and function with a real docstring becomes a document
whose id is its dotted name, which makes "search the standard library by meaning" work offline.
"""

from __future__ import annotations

import ast
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from embedkd.data.documents import Document

__all__ = ["stdlib_corpus"]

_SKIP_DIRS = {
    "test",
    "tests",
    "idlelib",
    "lib2to3",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "site-packages",
    "dist-packages",
    "__pycache__",
    "venv",
    "pydoc_data",
}
_MIN_CHARS = 80
_MAX_CHARS = 4000


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _docstrings(tree: ast.Module, module: str) -> Iterator[tuple[str, str, str]]:
    doc = ast.get_docstring(tree)
    if doc:
        yield module, "module", doc
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
            doc = ast.get_docstring(node)
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            if doc:
                yield f"{module}.{node.name}", kind, doc
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and not item.name.startswith("_"):
                        method_doc = ast.get_docstring(item)
                        if method_doc:
                            yield f"{module}.{node.name}.{item.name}", "method", method_doc


def stdlib_corpus(max_docs: int | None = 2000, *, root: Path | None = None) -> list[Document]:
    """Documents from standard-library docstrings, longest-first within each module, capped at ``max_docs``.

    The selection is deterministic for a given Python installation. Modules are visited in sorted order
    and each contributes its module docstring before its members, so a cap keeps breadth across modules.
    """
    root = root or Path(sysconfig.get_paths()["stdlib"])
    per_module: list[list[Document]] = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if any(part in _SKIP_DIRS or part.startswith("test") for part in relative.parts[:-1]):
            continue
        if relative.name.startswith(("test_", "_")) and relative.name != "__init__.py":
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
            continue
        module = _module_name(root, path)
        docs = [
            Document(
                id=name,
                title=name,
                text=" ".join(doc.split()),
                metadata={"module": module, "kind": kind},
            )
            for name, kind, doc in _docstrings(tree, module)
            if _MIN_CHARS <= len(doc) <= _MAX_CHARS
        ]
        if docs:
            per_module.append(docs)
    # Round-robin over modules so a cap keeps the corpus broad.
    out: list[Document] = []
    seen: set[str] = set()
    depth = 0
    while any(depth < len(docs) for docs in per_module):
        for docs in per_module:
            if depth < len(docs) and docs[depth].id not in seen:
                seen.add(docs[depth].id)
                out.append(docs[depth])
                if max_docs is not None and len(out) >= max_docs:
                    return out
        depth += 1
    return out
