"""One module per revision of the provider ledger's schema, oldest first by number."""
