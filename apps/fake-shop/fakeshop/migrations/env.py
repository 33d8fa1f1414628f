"""Alembic environment, run by `python -m fakeshop.migrate` and `flask db ...`.

Several replicas may start at once and each runs the migrations before serving. On PostgreSQL the
whole upgrade runs in one transaction that first takes an advisory lock: the replicas queue on it,
and each one after the first finds the schema at head and does nothing. The lock is released by
the commit (or rollback), so a crashed migrator cannot leave it held.
"""

import logging

from alembic import context
from flask import current_app
from sqlalchemy import text

# Any constant shared by every migrator of this app; the digits spell "fakeshop" loosely.
MIGRATION_LOCK_KEY = 0x0FA4E5409

if not logging.getLogger().handlers:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

db = current_app.extensions["migrate"].db
migration_options = {
    "target_metadata": db.metadata,
    "compare_type": True,
    # SQLite cannot ALTER most things in place; batch mode rebuilds tables instead.
    "render_as_batch": db.engine.dialect.name == "sqlite",
}


def run_offline() -> None:
    """`flask db upgrade --sql`: print the SQL instead of running it."""
    context.configure(url=db.engine.url, literal_binds=True, **migration_options)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    with db.engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=False, **migration_options)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
