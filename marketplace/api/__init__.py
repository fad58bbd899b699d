"""The relayer's HTTP API: artifact store, provider heartbeats, health and metrics."""
