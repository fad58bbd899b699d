"""The relayer service: the loop that follows the chain through its own index, matches open
jobs (marketplace.matching), submits assignments and keeps jobs moving (submitter, keeper)."""
