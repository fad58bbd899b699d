"""How tools/mutate_contracts.py reads slither-mutate's log and judges its survivors."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "mutate_contracts.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutate_contracts", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


mc = _load()

# As slither-mutate -v logs it: colour codes, the logger prefix, a statement over two lines.
LOG = (
    "INFO:Slither-Mutate:\x1b[94mMutating contract JobMarket\x1b[0m\n"
    "INFO:Slither-Mutate:\x1b[92m[ROR] Line 712: 'votes * 2 > seats' ==> 'votes * 2 >= seats'"
    " --> CAUGHT\x1b[0m\n"
    "INFO:Slither-Mutate:[ROR] Line 730: 'revealMask & (1 << i) != 0' ==> "
    "'revealMask & (1 << i) == 0' --> UNCAUGHT\n"
    "INFO:Slither-Mutate:\x1b[93m[RR] Line 744: '(uint256 upheld, uint256 reward) =\n"
    "            _judge(jobId, j, digest, found, t)' ==> 'revert()' --> COMPILATION FAILURE"
    "\x1b[0m\n"
    "INFO:Slither-Mutate:Mutating contract JobLib\n"
    "INFO:Slither-Mutate:[AOR] Line 36: 'amount * feeBps / BPS' ==> 'amount * feeBps % BPS'"
    " --> UNCAUGHT\n"
    "INFO:Slither-Mutate:Done mutating JobLib.\n"
)


def test_every_verdict_is_read_with_its_contract() -> None:
    mutants = mc.parse_log(LOG)
    assert [(m.contract, m.mutator, m.line, m.verdict) for m in mutants] == [
        ("JobMarket", "ROR", 712, "killed"),
        ("JobMarket", "ROR", 730, "survived"),
        ("JobMarket", "RR", 744, "no-compile"),
        ("JobLib", "AOR", 36, "survived"),
    ]
    assert mutants[0].original == "votes * 2 > seats"
    assert mutants[0].mutant == "votes * 2 >= seats"
    assert mc.normalize(mutants[2].original) == (
        "(uint256 upheld, uint256 reward) = _judge(jobId, j, digest, found, t)"
    )


def test_a_listed_equivalent_matches_by_text_not_line() -> None:
    equivalent = mc.Equivalent(
        "JobMarket", "revealMask  &  (1 << i) != 0", "revealMask & (1 << i) == 0", "reason"
    )
    survivor = mc.parse_log(LOG)[1]
    assert mc.find_equivalent(survivor, [equivalent]) is equivalent
    moved = mc.Mutant("JobMarket", "ROR", 999, survivor.original, survivor.mutant, "survived")
    assert mc.find_equivalent(moved, [equivalent]) is equivalent
    elsewhere = mc.Mutant("JobLib", "ROR", 730, survivor.original, survivor.mutant, "survived")
    assert mc.find_equivalent(elsewhere, [equivalent]) is None
    other_change = mc.Mutant("JobMarket", "ROR", 730, survivor.original, "true", "survived")
    assert mc.find_equivalent(other_change, [equivalent]) is None


def test_the_table_counts_each_verdict_and_keeps_unexplained_survivors() -> None:
    equivalent = mc.Equivalent("JobLib", "amount * feeBps / BPS", "amount * feeBps % BPS", "reason")
    rows = mc.tabulate(mc.parse_log(LOG), [equivalent], ["JobMarket", "JobLib", "MarketLib"])
    counts = {
        r.contract: (r.mutants, r.killed, r.survived, r.equivalent, r.no_compile) for r in rows
    }
    assert counts == {
        "JobMarket": (3, 1, 1, 0, 1),
        "JobLib": (1, 0, 0, 1, 0),
        "MarketLib": (0, 0, 0, 0, 0),
    }
    assert [m.line for r in rows for m in r.survivors] == [730]
    table = mc.render(rows).splitlines()
    assert table[0].split("|")[1:-1] == [
        " contract  ",
        " mutants ",
        " killed ",
        " survived ",
        " equivalent ",
        " did not compile ",
    ]
    assert [c.strip() for c in table[-1].split("|")[1:-1]] == ["total", "4", "1", "1", "1", "1"]


def test_equivalents_file_needs_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "eq.toml"
    path.write_text('[[equivalent]]\ncontract = "JobLib"\noriginal = "a"\nmutant = "b"\n')
    with pytest.raises(mc.MutationError, match="reason"):
        mc.load_equivalents(path)
    path.write_text(
        '[[equivalent]]\ncontract = "JobLib"\noriginal = "a"\nmutant = "b"\nreason = "r"\n'
    )
    assert mc.load_equivalents(path) == [mc.Equivalent("JobLib", "a", "b", "r")]


def test_the_committed_equivalents_file_loads() -> None:
    for entry in mc.load_equivalents():
        assert entry.contract in mc.TARGETS


def test_functions_are_chosen_by_name_in_the_contract_that_declares_them() -> None:
    names = mc.function_names("reveal(uint256,bytes32), _resolve ,reveal")
    assert names == ["reveal", "_resolve"]
    source = "function reveal(uint256 jobId, bytes32 digest) external {}\n// _resolve(\n"
    assert mc.functions_in(source, names) == ["reveal"]
    with pytest.raises(mc.MutationError, match="function name"):
        mc.function_names("reveal,1bad")


def test_suites_that_cannot_reach_the_contract_are_not_run() -> None:
    assert mc.test_command("SortitionTree") == (
        "forge test --no-match-path 'test/unit/ComputeToken.t.sol'"
    )
    cmd = mc.test_command("JobMarket")
    assert cmd.startswith("forge test --no-match-path '{")
    assert "SortitionTree.t.sol" in cmd


def test_the_default_scope_is_the_verdict_and_money_paths_and_options_narrow_it() -> None:
    default = mc._parse_args([])
    assert default.passes == mc.DEFAULT_SCOPE
    assert default.suites == set(mc.VERDICT_SUITES)
    quick = mc._parse_args(["--quick"])
    assert quick.passes == mc.QUICK_SCOPE and quick.suites == set(mc.QUICK_SUITES)
    chosen = mc._parse_args(["--contracts", "JobLib,SortitionTree", "--mutators", "ROR"])
    assert chosen.passes == (mc.Pass("JobLib", None, "ROR"), mc.Pass("SortitionTree", None, "ROR"))
    assert chosen.suites is None
    everything = mc._parse_args(["--all"])
    assert [p.contract for p in everything.passes] == list(mc.TARGETS)
    assert all(p.functions is None and p.mutators is None for p in everything.passes)
    with pytest.raises(SystemExit):
        mc._parse_args(["--contracts", "Nope"])
    with pytest.raises(SystemExit):
        mc._parse_args(["--quick", "--mutators", "ROR"])
