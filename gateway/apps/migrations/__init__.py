"""Alembic migrations of the App layer's store (run by `Store.open`)."""
