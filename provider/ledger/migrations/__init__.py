"""The provider ledger's schema revisions (Alembic; run by marketplace.index.migrate)."""
