"""Persistence: SQLAlchemy tables, Alembic migrations and the Store of use-case methods."""
