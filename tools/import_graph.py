"""The package graph of marketplace/ and provider/: which first-level package imports which.

Read from the source with `ast`, so every import counts: at module level, inside functions
(the lazy ones that keep `depin --help` fast) and under `if TYPE_CHECKING:`. A first-level
package is `marketplace.<name>` (a subpackage or a single module such as marketplace.demo) or
`provider` as a whole.

    .venv/bin/python tools/import_graph.py            # the graph as a Mermaid flowchart
    .venv/bin/python tools/import_graph.py --edges    # the imports behind every arrow

docs/architecture.md shows the flowchart; tests/unit/test_architecture.py checks every arrow
against the allowed ones and that the flowchart in the docs is this script's output.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The top-level packages scanned, and the only imports that count.
TOP_LEVEL = ("marketplace", "provider")


@dataclass(frozen=True, order=True)
class Import:
    """One import statement's reach from one package into another."""

    source: str
    target: str
    #: The importing module (dotted) and the line of the statement.
    module: str
    line: int
    #: What it imports, dotted.
    name: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.name}"


def package_of(module: str) -> str | None:
    """The first-level package of a dotted module name, or None outside the project."""
    parts = module.split(".")
    if parts[0] not in TOP_LEVEL:
        return None
    if parts[0] == "provider":
        return "provider"
    return ".".join(parts[:2])


def module_name(path: Path, root: Path = ROOT) -> str:
    """The dotted name of the module in `path` (a package's __init__ is the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(dotted: str, root: Path) -> bool:
    base = root.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_in(
    source: str, module: str, *, is_package: bool = False, root: Path = ROOT
) -> Iterator[Import]:
    """The imports of `source` (the text of `module`) that reach into another first-level
    package of the project."""
    here = package_of(module)
    if here is None:
        return
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                # A relative import counts from the importing module's own package.
                anchor = module.split(".")
                if not is_package:
                    anchor = anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                # `from marketplace import demo` reaches marketplace.demo; `from
                # marketplace.api.app import x` reaches marketplace.api whatever x is.
                names.append(candidate if _is_module(candidate, root) else base)
        for name in names:
            target = package_of(name)
            if target is not None and target != here:
                yield Import(here, target, module, node.lineno, name)


def scan(root: Path = ROOT) -> list[Import]:
    """Every cross-package import under `root`'s marketplace/ and provider/, sorted."""
    found: set[Import] = set()
    for top in TOP_LEVEL:
        for path in sorted((root / top).rglob("*.py")):
            found.update(
                imports_in(
                    path.read_text(encoding="utf-8"),
                    module_name(path, root),
                    is_package=path.name == "__init__.py",
                    root=root,
                )
            )
    return sorted(found)


def packages(root: Path = ROOT) -> list[str]:
    """Every first-level package under `root` (those without any import included)."""
    found = {
        package_of(module_name(path, root))
        for top in TOP_LEVEL
        for path in (root / top).rglob("*.py")
    }
    return sorted(p for p in found if p is not None)


def arrows(imports: Iterable[Import]) -> list[tuple[str, str]]:
    """The package graph: each (importer, imported) pair once, sorted."""
    return sorted({(i.source, i.target) for i in imports})


def _node(package: str) -> str:
    return package.replace(".", "_")


def mermaid(imports: Iterable[Import]) -> str:
    """The package graph as a Mermaid flowchart, importer above imported."""
    pairs = arrows(imports)
    nodes = sorted({p for pair in pairs for p in pair})
    lines = ["flowchart TD"]
    lines += [f'    {_node(p)}["{p}"]' for p in nodes]
    lines += [f"    {_node(a)} --> {_node(b)}" for a, b in pairs]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/import_graph.py", description=__doc__)
    parser.add_argument(
        "--edges", action="store_true", help="list the imports behind every arrow instead"
    )
    args = parser.parse_args(argv)
    imports = scan()
    if not args.edges:
        sys.stdout.write(mermaid(imports))
        return 0
    for source, target in arrows(imports):
        print(f"{source} -> {target}")
        for i in imports:
            if (i.source, i.target) == (source, target):
                print(f"    {i}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
