"""`python -m fakeshop.migrate`: bring the database schema to the newest migration.

Waits up to DB_WAIT_TIMEOUT seconds (default 30) for the database to answer, then upgrades; a
no-op when the schema is current, and safe to run from several replicas at once. Exits 0 on
success, 1 on any failure, so a launcher can refuse to start the app on a broken schema.
"""

from __future__ import annotations

import logging
import sys

from sqlalchemy.exc import OperationalError

from fakeshop import create_app
from fakeshop.config import ConfigError, redacted
from fakeshop.database import head_revision, upgrade_to_head
from fakeshop.errors import summary

log = logging.getLogger("fakeshop.migrate")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app()
    except (ConfigError, RuntimeError) as error:
        log.error("cannot configure the app: %s", error)
        return 1
    database = redacted(app.config["SQLALCHEMY_DATABASE_URI"])
    try:
        upgrade_to_head(app)
    except OperationalError as error:
        log.error(
            "cannot reach the database %s within %s s (DB_WAIT_TIMEOUT): %s; check DATABASE_URL "
            "or DB_HOST, DB_PORT, DB_USER, DB_PASSWORD, DB_NAME",
            database, app.config["DB_WAIT_TIMEOUT"], summary(error),
        )
        return 1
    except Exception:
        log.exception("migrating %s failed", database)
        return 1
    log.info("database %s is at revision %s", database, head_revision())
    return 0


if __name__ == "__main__":
    sys.exit(main())
