"""Economics: expected profit per job of each provider and requester strategy against the real
contracts at the default parameters, next to the honest provider's, measured in the same run.

Runs the Foundry bench contracts/test/bench/Economics.t.sol, which deploys ComputeToken,
ProviderRegistry and JobMarket (defaults: feeBps 250, auditBps 1000, 3 verifiers, collateral
10x, ...) afresh per strategy, plays N jobs per strategy with a fresh pseudo-random hash for every
commit block and audit seed block, and records every actor group's exact token P&L per job
(wallet + credits + stake; slashed stake is topped up between jobs as new capital, so stake shares
stay fixed). This script subtracts the compute cost, c x pay per honest execution (executor or
verifier seat; made-up digests and copies cost nothing), and prints profit per job in units of
pay (units x clearing price of an honest job) and the ratio to the honest provider's.

Replicas = 1 strategies are stratified: the jobs the random audit draw selects are measured on
their own (the natural ones plus --audited more whose commit-block hash is re-drawn until the draw
selects them, the same conditional distribution), then

    expected = (1 - p) x mean(not audited) + p x mean(audited),   p = auditBps / 10000

so the figure does not hinge on how many of N jobs the 10 % draw happened to select. The
"realised" column is the plain mean over the N natural jobs.

    .venv/bin/python -m bench.economics [--jobs 200] [--audited 100] [--compute-cost 0.3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = ROOT / "contracts"
FORGE = ROOT / "node_modules/@foundry-rs/forge-linux-amd64/bin/forge"
SNAPSHOT = CONTRACTS / "snapshots/economics.json"
RESULT = ROOT / "bench/results/economics.json"

GROUPS = ("player", "honest providers", "requester", "executor")
BASELINE = {
    "executor r1": "honest",
    "coalition": "honest",
    "requester": "honest",
    "executor r3": "honest r3",
}


def run_forge(jobs: int, audited: int) -> dict[str, Any]:
    """Runs the Solidity bench (compiling only src/ and test/bench, into its own out dir, so the
    rest of the test tree is not needed) and returns its JSON."""
    env = {
        **os.environ,
        "ECON_JOBS": str(jobs),
        "ECON_AUDITED": str(audited),
        "FOUNDRY_TEST": "test/bench",
        "FOUNDRY_OUT": "cache/bench-out",
        "FOUNDRY_CACHE_PATH": "cache/bench",
        "FOUNDRY_GAS_LIMIT": str(2**63 - 1),
    }
    forge = str(FORGE) if FORGE.exists() else "forge"
    if SNAPSHOT.exists():
        SNAPSHOT.unlink()
    proc = subprocess.run(
        [forge, "test", "--match-path", "test/bench/Economics.t.sol", "-vv"],
        cwd=CONTRACTS,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 or not SNAPSHOT.exists():
        sys.stderr.write(proc.stdout[-6000:] + proc.stderr[-6000:])
        raise SystemExit(f"forge bench failed (exit {proc.returncode})")
    data: dict[str, Any] = json.loads(SNAPSHOT.read_text())
    return data


def _mean(buckets: list[dict[str, Any]], group: int, cost: float, pay: int) -> float | None:
    jobs = sum(b["jobs"] for b in buckets)
    if jobs == 0:
        return None
    pnl = sum(int(b["pnl"][group]) for b in buckets)
    computes = sum(b["computes"][group] for b in buckets)
    return float((pnl - cost * pay * computes) / jobs / pay)


def profit(s: dict[str, Any], group: int, cost: float, pay: int, p: float) -> tuple[float, float]:
    """(expected, realised) profit per job of `group` in units of pay."""
    b = s["buckets"]
    realised = _mean(b[0:2], group, cost, pay) or 0.0
    if not s["stratified"]:
        return realised, realised
    clear = _mean(b[0:1], group, cost, pay) or 0.0
    audited = _mean(b[1:3], group, cost, pay)
    if audited is None:
        return realised, realised
    return (1 - p) * clear + p * audited, realised


def analyse(data: dict[str, Any], cost: float) -> dict[str, Any]:
    pay = int(data["pay"])
    params = data["params"]
    p = params["auditBps"] / 10_000
    by_name = {s["name"]: s for s in data["strategies"]}
    rows: list[dict[str, Any]] = []
    findings: list[str] = []
    for s in data["strategies"]:
        expected, realised = profit(s, 0, cost, pay, p)
        base_name = BASELINE[s["role"]]
        base, _ = profit(by_name[base_name], 0, cost, pay, p)
        row: dict[str, Any] = {
            "strategy": s["name"],
            "role": s["role"],
            "baseline": base_name,
            "profit_per_job": round(expected, 4),
            "realised_per_job": round(realised, 4),
            "honest_profit_per_job": round(base, 4),
            "ratio_to_honest": round(expected / base, 3) if base else None,
            "natural_jobs": s["buckets"][0]["jobs"] + s["buckets"][1]["jobs"],
            "natural_audited": s["buckets"][1]["jobs"],
            "forced_audited": s["buckets"][2]["jobs"],
            "out_of_model": s["coalition_bps"] >= 5000,
        }
        for key in (
            "seal_blocked_reveals",
            "rejected_assignments",
            "rejected_creates",
            "honest_slashes",
            "verdicts_for_made_up_digest",
            "verifier_seats",
            "coalition_seats",
            "coalition_bps",
        ):
            row[key] = s[key]
        honest_pool, _ = profit(s, 1, cost, pay, p)
        row["honest_pool_per_job"] = round(honest_pool, 4)
        if s["role"] == "requester":
            victim, _ = profit(s, 3, cost, pay, p)
            row["victim_executor_per_job"] = round(victim, 4)
        cheat = s["name"] not in BASELINE.values()
        row["cheat"] = cheat
        if not cheat and expected <= 0:
            findings.append(
                f"honest strategy '{s['name']}' is not above zero ({expected:+.3f} pay/job)"
            )
        if cheat and not row["out_of_model"]:
            if expected >= base:
                findings.append(
                    f"'{s['name']}' is not below honest ({expected:+.3f} vs {base:+.3f} pay/job)"
                )
            if s["role"] == "requester" and expected > 0:
                findings.append(
                    f"requester attack '{s['name']}' extracts tokens ({expected:+.3f} pay/job)"
                )
            if s["role"] == "requester" and row.get("victim_executor_per_job", 0) < 0:
                findings.append(
                    f"'{s['name']}': the honest executor loses "
                    f"{row['victim_executor_per_job']:+.3f} pay/job (griefing at the attacker's "
                    f"cost {expected:+.3f} pay/job); invariant 11 holds per seat majority, "
                    "not per stake minority"
                )
        if cheat and not row["out_of_model"] and s["honest_slashes"] > 0:
            findings.append(
                f"'{s['name']}': honest providers (executor or verifiers that revealed the "
                f"correct digest) were slashed {s['honest_slashes']} times; a "
                f"{s['coalition_bps'] / 100:g} % stake minority won a seat majority in "
                f"{s['verdicts_for_made_up_digest']} rounds"
            )
        rows.append(row)
    return {
        "compute_cost": cost,
        "audit_probability": p,
        "params": params,
        "pay_wei": pay,
        "rows": rows,
        "findings": findings,
    }


def render(result: dict[str, Any], data: dict[str, Any]) -> str:
    c = result["compute_cost"]
    prm = result["params"]
    lines = [
        f"Economics at the defaults (auditBps {prm['auditBps']}, {prm['verifiers']} verifiers, "
        f"collateral {prm['collateralMultiple']}x pay, fee {prm['feeBps']} bps): "
        f"compute cost c = {c} x pay per honest execution",
        f"{data['natural_jobs']} jobs per strategy (+{data['forced_audit_jobs']} audit-selected "
        "jobs for replicas = 1 strategies); profit per job in units of pay; honest pool of "
        f"{data['honest_pool']} providers",
        "",
        f"{'strategy':<44}{'profit/job':>11}{'realised':>10}{'honest':>9}{'ratio':>8}"
        f"{'victim exec':>13}{'honest pool':>13}",
    ]
    for r in result["rows"]:
        victim = f"{r['victim_executor_per_job']:+.3f}" if "victim_executor_per_job" in r else "-"
        ratio = f"{r['ratio_to_honest']:+.2f}" if r["ratio_to_honest"] is not None else "-"
        name = r["strategy"] + (" *" if r["out_of_model"] else "")
        lines.append(
            f"{name:<44}{r['profit_per_job']:>+11.3f}{r['realised_per_job']:>+10.3f}"
            f"{r['honest_profit_per_job']:>+9.3f}{ratio:>8}{victim:>13}{r['honest_pool_per_job']:>+13.3f}"
        )
    lines.append(
        "* stake majority: outside the threat model, shown to locate where the defence ends"
    )
    lines.append("")
    if result["findings"]:
        lines.extend(f"FINDING: {f}" for f in result["findings"])
    else:
        lines.append("every in-model cheat is below honest, and honest is above zero")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200, help="natural jobs per strategy (200)")
    parser.add_argument("--audited", type=int, default=100, help="extra audit-selected jobs (100)")
    parser.add_argument(
        "--compute-cost", type=float, default=0.3, help="c: compute cost x pay (0.3)"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    data = run_forge(args.jobs, args.audited)
    wall = time.perf_counter() - start
    result = analyse(data, args.compute_cost)
    result["table"] = render(result, data)
    result["natural_jobs"] = data["natural_jobs"]
    result["forced_audit_jobs"] = data["forced_audit_jobs"]
    result["wall_s"] = round(wall, 1)
    print(result["table"])
    print(f"\nforge run (compile + {len(data['strategies'])} strategies): {wall:.1f} s")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    result["machine"] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_end": [round(x, 2) for x in load],
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULT.relative_to(ROOT)}")
    return result


if __name__ == "__main__":
    main()
