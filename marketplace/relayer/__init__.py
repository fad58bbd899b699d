"""The relayer service: listener, provider index, matcher (pure), submitter, keeper, store."""
