"""The devnet's sample workload: embedding jobs over short sentences, single-replica jobs
first (one per provider) and then jobs of three replicas, so that every provider runs a job alone
and beside others. `make demo` and `make chaos` submit it."""

from __future__ import annotations

from marketplace.devnet.manager import PRICE_PER_UNIT
from marketplace.requester import JobDraft

__all__ = ["REPLICAS", "SENTENCES", "SENTENCES_PER_JOB", "job_drafts", "replicas_for"]

#: Replicas of the jobs after the first round (cycled); see `replicas_for`.
REPLICAS = (3, 3, 1)
SENTENCES_PER_JOB = 4
#: What the requester embeds: short sentences, four to a job.
SENTENCES: tuple[str, ...] = (
    "A provider stakes tokens before it may take any job.",
    "The requester escrows payment when the job is created.",
    "Three replicas run the same job and must agree bit for bit.",
    "A lazy provider commits a digest it never computed.",
    "Audits re-run a single-replica job on three other providers.",
    "The majority digest wins and the odd one out is slashed.",
    "Results are encrypted to the requester's own wallet key.",
    "Celery workers pull jobs from a Redis queue, one per provider.",
    "The relayer matches jobs but never holds anyone's money.",
    "Every timeout path can be triggered by anybody.",
    "Deterministic kernels make honest replicas produce identical bytes.",
    "A commit hides the digest until every replica has committed.",
    "The seal binds a digest to the provider that computed it.",
    "Slashed stake compensates the requester and rewards the verifiers.",
    "Part of every slash is burned, so cheating never pays the network.",
    "Providers pull their earnings with one withdrawal.",
    "The cat sat on the warm windowsill all afternoon.",
    "Rain is expected over the mountains by the evening.",
    "She tuned the old piano before the concert began.",
    "Fresh bread smells best early in the morning.",
    "The river froze solid during the coldest week of the year.",
    "He planted tomatoes, basil and a row of sunflowers.",
    "The library stays open late on Thursdays.",
    "A lighthouse keeper logs every passing ship.",
    "Sentence embeddings map similar meanings to nearby vectors.",
    "Cosine similarity compares the direction of two vectors.",
    "The model has six transformer layers and 384 output dimensions.",
    "Mean pooling averages the token vectors of a sentence.",
    "Trains to the airport leave every fifteen minutes.",
    "The museum added a wing for modern sculpture.",
    "Bees carry pollen from flower to flower.",
    "The chess match ended in a draw after six hours.",
)


def replicas_for(count: int, providers: int) -> list[int]:
    """Replicas of `count` jobs for `providers` providers: a first round of single-replica jobs,
    one per provider, then REPLICAS cycled (the last job of a batch too small for both gets 3).

    The matcher spreads jobs of equal price by load, so with more jobs than providers the first
    round gives every provider, the lazy one included, a job to run alone (the audit's drawn
    verifiers catch it: the job is refunded), and the replicas=3 jobs after it put providers
    beside two others (a disagreement goes to verifiers drawn from the providers outside the job,
    and is refunded unjudged when fewer than three are outside it). A lazy provider drawn as a
    verifier and outvoted goes unpaid but keeps its stake, so the job it runs alone is what
    slashes it."""
    first = min(count, providers)
    out = [1] * first + [REPLICAS[i % len(REPLICAS)] for i in range(count - first)]
    if count > 1 and 3 not in out:
        out[-1] = 3
    return out


def job_drafts(
    count: int, *, providers: int, sentences_per_job: int = SENTENCES_PER_JOB
) -> list[tuple[JobDraft, tuple[str, ...]]]:
    """`count` embed jobs (replicas from `replicas_for`) with the sentences each embeds."""
    out = []
    replicas = replicas_for(count, providers)
    for i in range(count):
        start = (i * sentences_per_job) % len(SENTENCES)
        sentences = tuple(SENTENCES[(start + k) % len(SENTENCES)] for k in range(sentences_per_job))
        draft = JobDraft(
            kind="embed",
            max_price_per_unit=PRICE_PER_UNIT,
            sentences=sentences,
            replicas=replicas[i],
        )
        out.append((draft, sentences))
    return out
