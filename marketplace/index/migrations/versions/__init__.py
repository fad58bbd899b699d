"""One module per revision of the chain index's schema, oldest first by number."""
