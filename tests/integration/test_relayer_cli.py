"""`depin relayer run` as a real process against Anvil: it serves the HTTP API next to the loop,
heartbeats posted over HTTP make providers matchable (the API and the matcher share one liveness
book), GET /jobs and /status agree with the chain, and SIGTERM stops it cleanly (exit 0, no
process left in its group). Every wait is bounded."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from web3 import Web3

from marketplace.devnet import scenarios
from marketplace.devnet.anvil import Anvil, free_port, funded_account
from marketplace.protocol.client import JobRequest, JobState
from marketplace.protocol.heartbeat import sign_heartbeat
from tests.conftest import reverted

pytestmark = pytest.mark.integration

READY_SECONDS = 120.0
ASSIGN_SECONDS = 60.0
STOP_SECONDS = 40.0


def _request(tag: int) -> JobRequest:
    return JobRequest(
        spec_hash=hashlib.sha256(f"relayer-cli-job-{tag}".encode()).digest(),
        units=scenarios.UNITS,
        max_price_per_unit=scenarios.PRICE,
        replicas=1,
    )


def _env(cast: scenarios.Cast, tmp_path: Path, port: int) -> dict[str, str]:
    deployment_file = tmp_path / "deployment.json"
    cast.deployment.write(deployment_file)
    assert cast.matcher.signer is not None
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DEPIN_RELAYER_", "DEPIN_API_"))
    }
    env.update(
        DEPIN_RELAYER_RPC_URL=str(cast.w3.provider.endpoint_uri),  # type: ignore[attr-defined]
        DEPIN_RELAYER_DEPLOYMENT_FILE=str(deployment_file),
        DEPIN_RELAYER_PRIVATE_KEY="0x" + bytes(cast.matcher.signer.account.key).hex(),
        DEPIN_RELAYER_DB_URL=f"sqlite:///{tmp_path / 'relayer.sqlite3'}",
        DEPIN_RELAYER_CONFIRMATIONS="0",
        DEPIN_RELAYER_POLL_INTERVAL="0.2",
        DEPIN_RELAYER_API_PORT=str(port),
        DEPIN_RELAYER_ARTIFACT_ROOT=str(tmp_path / "artifacts"),
    )
    return env


def _log(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:]


def _post_heartbeat(
    http: httpx.Client, cast: scenarios.Cast, name: str, log: Path, deadline: float
) -> None:
    """Posts a fresh heartbeat of provider `name` until the API accepts it (403 `unregistered`
    while the listener has not indexed the registration yet)."""
    provider = cast.providers[name]
    assert provider.signer is not None
    while True:
        hb = sign_heartbeat(
            provider.signer.account,
            chain_id=cast.deployment.chain_id,
            market=cast.deployment.market,
            timestamp=int(time.time()),
            load=0,
            capacity=4,
            profiles=[0],
        )
        try:
            r = http.post("/heartbeats", content=hb.model_dump_json())
        except httpx.TransportError:
            r = None
        if r is not None and r.status_code == 200:
            return
        if r is not None and r.status_code == 409:  # same second as an accepted one
            time.sleep(1.0)
            continue
        if time.monotonic() > deadline:
            detail = None if r is None else (r.status_code, r.text)
            pytest.fail(f"heartbeat of {name} not accepted: {detail}\n{_log(log)}")
        time.sleep(0.2)


def test_relayer_run_serves_api_and_assigns_heartbeating_providers(
    anvil: Anvil, tmp_path: Path
) -> None:
    w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 10}))
    # The relayer process is gone (the `finally` below) before the revert undoes its work.
    with reverted(w3):
        cast = scenarios.setup(w3, funded_account(w3), providers=3)
        scenarios.set_audit_rate(cast, 0)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = tmp_path / "relayer.log"
        command = [sys.executable, "-m", "marketplace.cli.main", "relayer", "run", "--json"]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                command,
                env=_env(cast, tmp_path, port),
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        try:
            with httpx.Client(base_url=url, timeout=5) as http:
                deadline = time.monotonic() + READY_SECONDS
                live = ("alice", "bob")
                for name in live:
                    assert proc.poll() is None, _log(log)
                    _post_heartbeat(http, cast, name, log, deadline)
                assert {p["address"] for p in http.get("/providers").json()} >= {
                    cast.providers[n].address for n in live
                }

                jobs = cast.requester.create_jobs([_request(i) for i in range(4)])
                deadline = time.monotonic() + ASSIGN_SECONDS
                while not all(cast.owner.state(j) == JobState.ASSIGNED for j in jobs):
                    assert proc.poll() is None, _log(log)
                    assert time.monotonic() < deadline, f"jobs not assigned\n{_log(log)}"
                    time.sleep(0.3)
                allowed = {cast.providers[n].address for n in live}
                for j in jobs:
                    assert {p.provider for p in cast.owner.participants(j)} <= allowed

                # The API reads the relayer's store: wait for the listener to apply the
                # assignments, then compare with the chain.
                deadline = time.monotonic() + ASSIGN_SECONDS
                while True:
                    page = http.get("/jobs", params={"limit": 500}).json()
                    served = {j["job_id"]: j["state"] for j in page["jobs"]}
                    if all(served.get(j) == "assigned" for j in jobs):
                        break
                    assert time.monotonic() < deadline, f"/jobs lags: {served}\n{_log(log)}"
                    time.sleep(0.3)
                assert served == {j: cast.owner.state(j).name.lower() for j in jobs}
                status = http.get("/status").json()
                assert status["chain_id"] == cast.deployment.chain_id
                assert status["jobs"] == len(jobs)
                assert status["jobs_by_state"]["assigned"] == len(jobs)
                metrics = http.get("/metrics")
                assert metrics.status_code == 200
                assert "depin_heartbeats_accepted_total" in metrics.text

            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                pytest.fail(f"relayer did not stop within {STOP_SECONDS} s\n{_log(log)}")
            assert rc == 0, _log(log)
            assert '{"stopped": true}' in _log(log)
            with pytest.raises(ProcessLookupError):
                os.killpg(proc.pid, 0)  # nothing left in the relayer's process group
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
