"""Where each provider put its encrypted result of a job: signed notices, kept on disk (served
by marketplace.api.routes.results).

The relayer is not trusted with results: a requester decrypts the artifact and checks its digest
against the commitment the contract stores for that provider. The index only saves requesters
from scanning the store. Notices are kept under ``<artifact root>/results/<job id>.json``,
written atomically (temp file + rename), so they survive relayer restarts.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path

from marketplace.protocol.results import SignedResultNotice

__all__ = ["ResultIndex"]


class ResultIndex:
    """Signed result notices per job and provider, one JSON file per job."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _path(self, job_id: int) -> Path:
        return self.root / f"{job_id}.json"

    def get(self, job_id: int) -> dict[str, SignedResultNotice]:
        try:
            data = json.loads(self._path(job_id).read_text())
        except FileNotFoundError:
            return {}
        return {p: SignedResultNotice.model_validate(n) for p, n in data.items()}

    def put(self, signed: SignedResultNotice) -> str:
        """Records `signed`; returns "recorded", "duplicate" or "older" (not recorded)."""
        notice = signed.notice
        with self._lock:
            held = self.get(notice.job_id)
            current = held.get(notice.provider)
            if current is not None:
                if current == signed:
                    return "duplicate"
                if current.notice.timestamp >= notice.timestamp:
                    return "older"
            held[notice.provider] = signed
            text = json.dumps({p: n.model_dump(mode="json") for p, n in sorted(held.items())})
            fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path(notice.job_id))
            return "recorded"
