"""Alembic migrations of the cloud's database; `frigo cloud migrate` applies them."""
