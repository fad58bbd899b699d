"""The local devnet: Anvil and the processes that run against it."""
