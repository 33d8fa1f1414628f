"""The SQLAlchemy handle, the migrations and the checks that tell whether the schema is current."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase

# Inside the package, so `flask db ...` and `python -m fakeshop.migrate` work from any directory.
MIGRATIONS_DIR = Path(__file__).parent / "migrations"

log = logging.getLogger(__name__)


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
migrate = Migrate(directory=str(MIGRATIONS_DIR))


def head_revision() -> str:
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def schema_problem(engine: Engine, head: str) -> str | None:
    """None when the database is migrated to ``head``, else what is wrong and how to fix it.

    Connection errors propagate: the caller tells "unreachable" from "not migrated".
    """
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
    if current == (head,):
        return None
    found = ", ".join(current) or "no revision"
    return f"database schema at {found}, expected {head}: run `python -m fakeshop.migrate`"


def wait_for_database(engine: Engine, timeout: float) -> None:
    """Retry connecting for up to ``timeout`` seconds: the database may still be starting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with engine.connect():
                return
        except OperationalError:
            if time.monotonic() >= deadline:
                raise
            log.info("database not reachable yet, retrying")
            time.sleep(1)


def upgrade_to_head(app: Flask) -> None:
    """Apply pending migrations; a no-op when the schema is current. Needs no app context."""
    with app.app_context():
        wait_for_database(db.engine, app.config["DB_WAIT_TIMEOUT"])
        command.upgrade(migrate.get_config(), "head")
