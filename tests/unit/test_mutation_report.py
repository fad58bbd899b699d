"""The pure parts of tools/mutate_python.py: how survivors are matched to the equivalent list,
placed in the source and counted in the table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutate_python", ROOT / "tools/mutate_python.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


mp = _load()

SOURCE = """\
def helper(x: int) -> int:
    return x + 1


class C:
    @property
    def size(self) -> int:
        if self.n > 0:
            return self.n
        return 0
"""

DIFF = """\
--- marketplace/protocol/x.py
+++ marketplace/protocol/x.py
@@ -1,4 +1,4 @@
     def size(self) -> int:
-        if self.n > 0:
+        if self.n >= 0:
             return self.n
         return 0"""

EQUIVALENTS = """
[[equivalent]]
module = "x"
removed = "if self.n > 0:"
added = "  if self.n >= 0:  "
reason = "n is never negative and size 0 returns 0 either way"
"""


def _mutant(status: str, diff: str = DIFF, module: str = "x") -> object:
    return mp.Mutant(f"marketplace.protocol.x.x_f__mutmut_{len(diff)}", module, status, diff)


def test_changed_lines_skips_headers_and_context() -> None:
    assert mp.changed_lines(DIFF) == (("if self.n > 0:",), ("if self.n >= 0:",))
    assert mp.changed_lines("") == ((), ())


def test_an_equivalent_matches_by_module_and_line_text_whatever_the_indentation() -> None:
    [entry] = mp.load_equivalents(EQUIVALENTS)
    assert mp.explain(_mutant(mp.SURVIVED), [entry]) == entry
    assert mp.explain(_mutant(mp.SURVIVED, module="y"), [entry]) is None
    other = DIFF.replace(">= 0", "> 1")
    assert mp.explain(_mutant(mp.SURVIVED, diff=other), [entry]) is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[equivalent]]\nmodule = 'x'\nremoved = 'a'\nadded = 'b'\n", "lacks \\['reason'\\]"),
        ("[[equivalent]]\nmodule='x'\nremoved='a'\nadded='b'\nreason=' '\n", "empty reason"),
        ("[[equivalent]\n", "not valid TOML"),
    ],
)
def test_a_broken_equivalent_list_is_refused(text: str, problem: str) -> None:
    with pytest.raises(mp.MutationError, match=problem):
        mp.load_equivalents(text)


def test_status_of_folds_mutmut_exit_codes() -> None:
    assert [mp.status_of(c) for c in (1, 3, 37)] == [mp.KILLED] * 3
    assert mp.status_of(0) == mp.SURVIVED
    assert mp.status_of(33) == mp.status_of(5) == mp.NO_TESTS
    assert mp.status_of(36) == mp.status_of(-24) == mp.TIMEOUT
    assert mp.status_of(None) == mp.status_of(-11) == mp.OTHER


def test_tabulate_counts_each_column_and_lists_the_unexplained() -> None:
    equivalents = mp.load_equivalents(EQUIVALENTS)
    stale = mp.Equivalent("x", ("gone",), ("gone too",), "line was rewritten")
    elsewhere = mp.Equivalent("z", ("a",), ("b",), "module not in this run")
    untested = _mutant(mp.NO_TESTS, diff=DIFF.replace(">= 0", "< 0"))
    survivor = _mutant(mp.SURVIVED, diff=DIFF.replace(">= 0", "> 1"))
    crashed = _mutant(mp.OTHER, diff="")
    mutants = [
        _mutant(mp.KILLED, diff=""),
        _mutant(mp.KILLED, diff="", module="y"),
        _mutant(mp.TIMEOUT, diff=""),
        _mutant(mp.SURVIVED),
        untested,
        survivor,
        crashed,
    ]
    rows, unmatched = mp.tabulate(["x", "y"], mutants, [*equivalents, stale, elsewhere])
    x, y = rows
    assert (x.module, x.mutants, x.killed, x.survived, x.equivalent, x.timeout, x.other) == (
        "x",
        6,
        1,
        2,
        1,
        1,
        1,
    )
    assert x.unexplained == [untested, survivor, crashed]
    assert (y.mutants, y.killed, y.unexplained) == (1, 1, [])
    assert unmatched == [stale]


def test_render_prints_one_row_per_module_and_a_total() -> None:
    rows = [mp.Row("digest", 10, 8, 1, 1), mp.Row("hashing", 5, 5)]
    lines = mp.render(rows).splitlines()
    assert lines[0].split(" | ") == [
        "module ",
        "mutants",
        "killed",
        "survived",
        "equivalent",
        "timeout",
        "other",
    ]
    assert [cell.strip() for cell in lines[2].split("|")] == [
        "digest",
        "10",
        "8",
        "1",
        "1",
        "0",
        "0",
    ]
    assert [cell.strip() for cell in lines[-1].split("|")] == [
        "total",
        "15",
        "13",
        "1",
        "1",
        "0",
        "0",
    ]
    assert len({len(line) for line in lines}) == 1


def test_source_line_places_the_change_in_its_function() -> None:
    assert mp.source_line(SOURCE, "size", DIFF) == 8
    assert mp.source_line(SOURCE, "helper", DIFF) == 0
    assert mp.source_line(SOURCE, "size", "") == 0


def test_function_of_reads_mutmut_names() -> None:
    assert mp.function_of("marketplace.protocol.digest.x__canonical__mutmut_37") == "_canonical"
    assert mp.function_of("marketplace.relayer.keeper.xǁSkipBookǁrecord__mutmut_2") == "record"


def test_the_command_line_rejects_unknown_modules() -> None:
    with pytest.raises(SystemExit) as exit_:
        mp.main(["--modules", "digest,nonsense"])
    assert exit_.value.code == 2


def test_quick_is_a_subset_and_every_target_has_tests() -> None:
    assert set(mp.QUICK) <= set(mp.TARGETS)
    for target in mp.TARGETS.values():
        assert (ROOT / target.path).is_file()
        assert all((ROOT / test).is_file() for test in target.tests)
