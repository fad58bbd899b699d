"""The chain index's schema revisions (an Alembic environment; see marketplace.index.migrate)."""
