"""depin-compute marketplace: protocol SDK, relayer, HTTP API and the `depin` CLI."""
