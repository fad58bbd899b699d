"""The package arrows of DESIGN section 2, kept: every import under marketplace/ and provider/
(module level, inside functions, under TYPE_CHECKING) goes only where the table below allows,
and the diagram in docs/architecture.md is the graph tools/import_graph.py draws today."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools/import_graph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


graph = _load()

PROTOCOL = "marketplace.protocol"
MATCHING = "marketplace.matching"
INDEX = "marketplace.index"
RELAYER = "marketplace.relayer"
API = "marketplace.api"
REQUESTER = "marketplace.requester"
DEVNET = "marketplace.devnet"
DEMO = "marketplace.demo"
CLI = "marketplace.cli"
PROVIDER = "provider"
EVERY = {PROTOCOL, MATCHING, INDEX, RELAYER, API, REQUESTER, DEVNET, DEMO, CLI, PROVIDER}

#: package -> the packages it may import. Anything not listed is forbidden.
ALLOWED: dict[str, set[str]] = {
    # The distribution's docstring only.
    "marketplace": set(),
    # The SDK: the only place that knows ABIs.
    PROTOCOL: set(),
    # Pure matching rules.
    MATCHING: {PROTOCOL},
    # The chain index; its store builds the matcher's views.
    INDEX: {PROTOCOL, MATCHING},
    RELAYER: {PROTOCOL, MATCHING, INDEX},
    API: {PROTOCOL, MATCHING, INDEX},
    REQUESTER: {PROTOCOL, MATCHING},
    PROVIDER: {PROTOCOL, INDEX},
    DEVNET: {PROTOCOL, REQUESTER, INDEX, MATCHING},
    DEMO: EVERY - {CLI, DEMO},
    # The one composition root.
    CLI: EVERY - {CLI},
}


def forbidden(imports: Iterable[Any]) -> list[str]:
    """One line per import that crosses an arrow the table does not allow."""
    out = []
    for i in imports:
        assert isinstance(i, graph.Import)
        if i.target not in ALLOWED.get(i.source, set()):
            out.append(f"{i}: {i.source} -> {i.target} is not allowed")
    return out


def test_every_package_has_a_row_in_the_table() -> None:
    unplaced = [p for p in graph.packages() if p not in ALLOWED]
    assert not unplaced, (
        f"new first-level packages {unplaced}: add each to ALLOWED in this test, with what it "
        "may import, and describe it in docs/architecture.md"
    )


def test_no_import_crosses_a_forbidden_arrow() -> None:
    imports = graph.scan()
    assert imports, "the scan found no import at all: check tools/import_graph.py's ROOT"
    problems = forbidden(imports)
    assert not problems, "\n".join(problems)


def test_the_scan_sees_lazy_type_only_and_relative_imports(tmp_path: Path) -> None:
    # A copy of the layout the scan resolves names against.
    for module in ("relayer/service.py", "api/app.py", "demo.py"):
        path = tmp_path / "marketplace" / module
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        (path.parent / "__init__.py").write_text("")
    source = """\
from typing import TYPE_CHECKING

import marketplace.protocol.client
from . import service
from marketplace import demo

if TYPE_CHECKING:
    from marketplace.api.app import ProviderSourceUnavailable


def serve() -> None:
    from ..api import app
"""
    found: list[Any] = list(graph.imports_in(source, "marketplace.relayer.keeper", root=tmp_path))
    assert sorted((i.target, i.line) for i in found) == [
        (API, 8),
        (API, 12),
        (DEMO, 5),
        (PROTOCOL, 3),
    ]
    assert forbidden(sorted(found, key=lambda i: i.line)) == [
        "marketplace.relayer.keeper:5 imports marketplace.demo: "
        "marketplace.relayer -> marketplace.demo is not allowed",
        "marketplace.relayer.keeper:8 imports marketplace.api.app: "
        "marketplace.relayer -> marketplace.api is not allowed",
        "marketplace.relayer.keeper:12 imports marketplace.api.app: "
        "marketplace.relayer -> marketplace.api is not allowed",
    ]


def test_the_diagram_in_the_docs_is_the_current_graph() -> None:
    text = (ROOT / "docs/architecture.md").read_text(encoding="utf-8")
    drawn = re.findall(r"```mermaid\n(.*?)```", text, flags=re.DOTALL)
    assert len(drawn) == 1, "docs/architecture.md should hold exactly one mermaid block"
    assert drawn[0] == graph.mermaid(graph.scan()), (
        "the diagram in docs/architecture.md is stale: paste the output of "
        "`.venv/bin/python tools/import_graph.py` into its mermaid block"
    )


# ---------------------------------------------------------------------- who talks SQL

#: Modules (or packages, with every module under them) that may import sqlalchemy: the chain
#: index owns its database and answers named queries; the provider's ledger is its own database.
SQL_ALLOWED = ("marketplace.index", "provider.ledger")
#: Known exceptions, each to be removed when its queries move into the index's store.
SQL_EXCEPTIONS: tuple[str, ...] = ()


def _within(module: str, owners: Iterable[str]) -> bool:
    return any(module == o or module.startswith(o + ".") for o in owners)


def sql_importers(root: Path = ROOT) -> list[str]:
    """`module:line` of every import of sqlalchemy under marketplace/ and provider/ (at module
    level, in functions, under TYPE_CHECKING) outside the modules allowed to."""
    out = []
    for top in graph.TOP_LEVEL:
        for path in sorted((root / top).rglob("*.py")):
            module = graph.module_name(path, root)
            if _within(module, SQL_ALLOWED + SQL_EXCEPTIONS):
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    names = [node.module or ""]
                else:
                    continue
                if any(n == "sqlalchemy" or n.startswith("sqlalchemy.") for n in names):
                    out.append(f"{module}:{node.lineno}")
    return out


def test_only_the_index_and_the_ledger_import_sqlalchemy() -> None:
    offenders = sql_importers()
    assert not offenders, (
        f"{', '.join(offenders)} import sqlalchemy: ask marketplace.index.store.Store a named "
        "query instead (add one there if none fits); only marketplace.index and "
        "provider.ledger own a database"
    )


def test_the_sql_scan_sees_every_import_form(tmp_path: Path) -> None:
    for module in ("relayer/service.py", "index/store.py", "api/routes.py", "cli/status.py"):
        path = tmp_path / "marketplace" / module
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").write_text("")
    (tmp_path / "provider").mkdir()
    (tmp_path / "provider" / "ledger.py").write_text("from sqlalchemy import select\n")
    (tmp_path / "marketplace/index/store.py").write_text("import sqlalchemy.orm\n")
    (tmp_path / "marketplace/relayer/service.py").write_text(
        "from typing import TYPE_CHECKING\n\n"
        "if TYPE_CHECKING:\n    from sqlalchemy.orm import Session\n"
    )
    (tmp_path / "marketplace/api/routes.py").write_text(
        "import json\n\n\ndef page() -> None:\n    import sqlalchemy as sa\n"
    )
    (tmp_path / "marketplace/cli/status.py").write_text(
        "from marketplace.index.store import Store\nimport sqlalchemy_utils\n"
    )
    assert sql_importers(tmp_path) == ["marketplace.api.routes:5", "marketplace.relayer.service:4"]


# ---------------------------------------------------------------------- who knows ABIs

#: Modules (or packages, with every module under them) that may call a contract's functions or
#: events: the SDK, whose `Market` offers every call and event the product uses as a typed method.
ABI_ALLOWED = ("marketplace.protocol",)
#: Known exceptions, each to be removed when its calls move onto `Market`. Tests and bench/ are
#: not scanned: they drive the contracts directly to check them.
ABI_EXCEPTIONS: tuple[str, ...] = ()
_CONTRACT_NAMESPACES = {"functions", "events"}


def _namespace(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr in _CONTRACT_NAMESPACES


def contract_calls_in(source: str) -> list[int]:
    """Lines where a contract's `functions` or `events` is reached into: `x.functions.f`,
    `x.events.E`, `x.events[name]`, `getattr(x.events, name)`. A plain attribute named `events`
    (a report's list of them) is not a contract's."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        reached: ast.AST
        if isinstance(node, ast.Attribute | ast.Subscript):
            reached = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args:
            if node.func.id != "getattr":
                continue
            reached = node.args[0]
        else:
            continue
        if _namespace(reached):
            lines.append(node.lineno)
    return sorted(lines)


def abi_users(root: Path = ROOT) -> list[str]:
    """`module:line` of every contract function or event reached for under marketplace/ and
    provider/ outside the modules allowed to."""
    out = []
    for top in graph.TOP_LEVEL:
        for path in sorted((root / top).rglob("*.py")):
            module = graph.module_name(path, root)
            if _within(module, ABI_ALLOWED + ABI_EXCEPTIONS):
                continue
            out += [f"{module}:{n}" for n in contract_calls_in(path.read_text(encoding="utf-8"))]
    return out


def test_only_the_sdk_calls_contract_functions_and_events() -> None:
    offenders = abi_users()
    assert not offenders, (
        f"{', '.join(offenders)} call a contract's functions or events: use a typed method of "
        "marketplace.protocol.client.Market (add one there if none fits); the SDK is the only "
        "place that knows ABIs"
    )


def test_the_abi_scan_sees_every_form_and_only_contracts(tmp_path: Path) -> None:
    source = """\
def run(market, report, name):
    report.events = 3
    total = len(report.events)
    market.market.functions.cancel(1)
    market.registry.events.Unbonded().process_receipt({})
    market.market.events[name]()
    getattr(market.market.events, name)
"""
    assert contract_calls_in(source) == [4, 5, 6, 7]
    for module in ("protocol/client.py", "cli/provider.py"):
        path = tmp_path / "marketplace" / module
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").write_text("")
        path.write_text(source)
    (tmp_path / "provider").mkdir()
    (tmp_path / "provider" / "worker.py").write_text("def f(c):\n    return c.functions.x()\n")
    assert abi_users(tmp_path) == [
        "marketplace.cli.provider:4",
        "marketplace.cli.provider:5",
        "marketplace.cli.provider:6",
        "marketplace.cli.provider:7",
        "provider.worker:2",
    ]
