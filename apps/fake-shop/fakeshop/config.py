"""Configuration read from the environment, as a plain dict for ``app.config``."""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from fakeshop import parse

log = logging.getLogger(__name__)

# Same defaults as the original project, so existing manifests keep working.
DB_DEFAULTS = {
    "DB_HOST": "localhost",
    "DB_PORT": "5432",
    "DB_USER": "ecommerce",
    "DB_PASSWORD": "Pg1234",
    "DB_NAME": "ecommerce",
}
SQLITE_FILE_NAME = "fakeshop.sqlite3"
# The largest request is the checkout form (14 short fields): 64 KiB is plenty, and a bigger body
# is refused with 413 before anything parses it.
DEFAULT_MAX_CONTENT_LENGTH = 64 * 1024
LARGEST_MAX_CONTENT_LENGTH = 1024**3
LONGEST_DB_WAIT_SECONDS = 24 * 3600
TRUE_WORDS = {"1", "true", "yes", "on"}


class ConfigError(ValueError):
    """A setting from the environment is unusable; the message names it and the fix."""


def config_from_env(environ: Mapping[str, str]) -> dict:
    """Everything but the database, which ``database_url_from_env`` resolves."""
    return {
        "SECRET_KEY": environ.get("SECRET_KEY") or None,
        "DEBUG": False,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": flag(environ, "COOKIE_SECURE"),
        "DB_WAIT_TIMEOUT": whole_number(environ, "DB_WAIT_TIMEOUT", default=30, lowest=0,
                                        highest=LONGEST_DB_WAIT_SECONDS, unit="seconds"),
        "MAX_CONTENT_LENGTH": whole_number(environ, "MAX_CONTENT_LENGTH",
                                           default=DEFAULT_MAX_CONTENT_LENGTH, lowest=1,
                                           highest=LARGEST_MAX_CONTENT_LENGTH, unit="bytes"),
    }


def database_url_from_env(environ: Mapping[str, str], instance_path: str) -> str:
    """DATABASE_URL wins; then the DB_* variables; with neither, an embedded SQLite file."""
    if environ.get("DATABASE_URL"):
        return normalise_database_url(environ["DATABASE_URL"])
    if any(environ.get(name) for name in DB_DEFAULTS):
        settings = {name: environ.get(name) or default for name, default in DB_DEFAULTS.items()}
        return URL.create(
            "postgresql+psycopg",
            username=settings["DB_USER"],
            password=settings["DB_PASSWORD"],
            host=settings["DB_HOST"],
            port=port_number(settings["DB_PORT"]),
            database=settings["DB_NAME"],
        ).render_as_string(hide_password=False)
    return "sqlite:///" + str(embedded_sqlite_path(instance_path))


def normalise_database_url(raw_url: str) -> str:
    try:
        url = make_url(raw_url)
    except Exception as error:
        raise ConfigError(
            f"DATABASE_URL is not a database URL ({error.__class__.__name__}); "
            "expected e.g. postgresql://user:password@host:5432/name or sqlite:////path/file.db"
        ) from None
    # Only psycopg 3 is installed: plain postgres:// URLs (as many hosting platforms hand out)
    # would make SQLAlchemy look for psycopg2.
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def port_number(raw: str) -> int:
    port = parse.ascii_int(raw, 65535)
    if port:
        return port
    raise ConfigError(f"DB_PORT must be a TCP port number (1..65535), got {raw!r}")


def whole_number(environ: Mapping[str, str], name: str, *, default: int, lowest: int, highest: int,
                 unit: str) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    value = parse.ascii_int(raw, highest)
    if value is None or value < lowest:
        raise ConfigError(
            f"{name} must be a whole number of {unit} from {lowest} to {highest}, got {raw[:40]!r}")
    return value


def flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() in TRUE_WORDS


def embedded_sqlite_path(instance_path: str) -> Path:
    """The instance folder when it is writable, else the temporary directory."""
    for folder in (Path(instance_path), Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder / SQLITE_FILE_NAME
    raise ConfigError(
        f"no writable folder for the embedded SQLite database (tried {instance_path} and "
        f"{tempfile.gettempdir()}): set DATABASE_URL or the DB_* variables"
    )


def engine_options(database_url: str) -> dict:
    # pool_pre_ping replaces connections the database dropped (restart, failover), so the app
    # recovers by itself once the database is back.
    options: dict = {"pool_pre_ping": True}
    backend = make_url(database_url).get_backend_name()
    if backend == "postgresql":
        # Fail fast (then answer 503) instead of hanging a worker while the database is unreachable.
        options["connect_args"] = {"connect_timeout": 5}
    elif backend == "sqlite":
        # Several gunicorn workers or threads share the file: wait for the write lock.
        options["connect_args"] = {"timeout": 30}
    return options


def ensure_secret_key(config: dict) -> None:
    if config.get("SECRET_KEY"):
        return
    log.warning(
        "SECRET_KEY is not set: using a random key, so sessions and flash messages do not "
        "survive a restart and are not shared between processes; set SECRET_KEY to a long "
        "random value (e.g. python -c 'import secrets; print(secrets.token_hex(32))')"
    )
    config["SECRET_KEY"] = secrets.token_hex(32)


def redacted(database_url: str) -> str:
    return make_url(database_url).render_as_string(hide_password=True)
