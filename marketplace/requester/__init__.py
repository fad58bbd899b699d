"""The requester side: the SDK behind `depin job` and `depin wallet`.

from marketplace.requester import Requester
with Requester.from_settings() as req:
    job = req.submit("embed", inputs=[Path("sentences.txt")], max_price_per_unit=10**15)
    req.wait(job)
    result = req.result(job, out=Path("embeddings.safetensors"))
"""

from marketplace.protocol.tokens import format_tokens
from marketplace.requester.errors import (
    InputError,
    InsufficientFunds,
    JobNotFound,
    NotRequester,
    RequesterError,
    ResultRejected,
    ResultUnavailable,
    WaitTimeout,
    WrongState,
)
from marketplace.requester.files import write_outputs
from marketplace.requester.inputs import (
    DEFAULT_PROFILE,
    EMBED_MODEL,
    JobDraft,
    PreparedJob,
    default_units,
    encode_sentences,
    parse_parameter,
    prepare,
    read_sentences,
)
from marketplace.requester.result import JobResult, ShardedResult
from marketplace.requester.sdk import Requester, ShardPlan
from marketplace.requester.settings import RequesterSettings, default_wallet_dir
from marketplace.requester.shard import ShardGroup, ShardRecord
from marketplace.requester.status import (
    AuditRoundStatus,
    Balances,
    JobStatus,
    JobSummary,
    ParticipantStatus,
)

__all__ = [
    "DEFAULT_PROFILE",
    "EMBED_MODEL",
    "AuditRoundStatus",
    "Balances",
    "InputError",
    "InsufficientFunds",
    "JobDraft",
    "JobNotFound",
    "JobResult",
    "JobStatus",
    "JobSummary",
    "NotRequester",
    "ParticipantStatus",
    "PreparedJob",
    "Requester",
    "RequesterError",
    "RequesterSettings",
    "ResultRejected",
    "ResultUnavailable",
    "ShardGroup",
    "ShardPlan",
    "ShardRecord",
    "ShardedResult",
    "WaitTimeout",
    "WrongState",
    "default_units",
    "default_wallet_dir",
    "encode_sentences",
    "format_tokens",
    "parse_parameter",
    "prepare",
    "read_sentences",
    "write_outputs",
]
