"""The `depin` command-line interface."""
