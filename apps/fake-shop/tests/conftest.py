"""Fixtures: a real PostgreSQL for the session, a fresh database per test, apps on it.

Most tests take ``app``/``client``, which run once on PostgreSQL and once on the embedded SQLite.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text

from fakeshop import create_app
from fakeshop.database import db, upgrade_to_head
from tests.support import PostgresServer, postgres_bindir

BACKENDS = ["postgresql", "sqlite"]


@pytest.fixture(scope="session")
def postgres():
    bindir = postgres_bindir()
    if bindir is None:
        reason = ("PostgreSQL server binaries (initdb, postgres) not found: install the Debian "
                  "package postgresql (they land in /usr/lib/postgresql/<version>/bin)")
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    server = PostgresServer(bindir)
    try:
        server.initialise()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_database_url(postgres):
    """A fresh, empty PostgreSQL database, dropped after the test."""
    name = f"shop_{uuid.uuid4().hex[:12]}"
    yield postgres.create_database(name)
    postgres.drop_database(name)


@pytest.fixture(scope="session")
def pg_shop_database(postgres):
    """One PostgreSQL database for all the tests that need a migrated shop and nothing else.

    A database per test costs about a second on PostgreSQL; emptying the order tables after each
    test (see ``database_url``) gives the same isolation for a fraction of it.
    """
    name = "shop_shared"
    postgres.create_database(name)
    return name


@pytest.fixture(params=BACKENDS)
def empty_database_url(request, tmp_path):
    """A database with nothing in it: no tables, no migrations applied."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_database_url")
    return f"sqlite:///{tmp_path / 'shop.sqlite3'}"


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path):
    """A database the ``app`` fixture migrates, holding no orders when the test starts."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shop.sqlite3'}"
        return
    postgres = request.getfixturevalue("postgres")
    name = request.getfixturevalue("pg_shop_database")
    yield postgres.create_database_url(name)
    with postgres.admin(name) as connection:
        connection.execute("TRUNCATE order_items, orders RESTART IDENTITY")


def shop_app(database_url: str, **overrides):
    return create_app({"SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": "test-secret",
                       "TESTING": True, **overrides})


def close_connections(app) -> None:
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def make_app():
    """Builds apps on a given database and closes their connections afterwards."""
    apps = []

    def build(database_url: str, **overrides):
        app = shop_app(database_url, **overrides)
        apps.append(app)
        return app

    yield build
    for app in apps:
        close_connections(app)


@pytest.fixture(scope="module")
def module_pg_app(postgres):
    """A migrated app on a PostgreSQL database of its own, for a whole module: hypothesis tests
    may only use fixtures that outlive one example, so each example checks what it changed."""
    name = f"shop_{uuid.uuid4().hex[:12]}"
    app = shop_app(postgres.create_database(name))
    upgrade_to_head(app)
    yield app
    close_connections(app)
    postgres.drop_database(name)


@pytest.fixture
def unmigrated_app(empty_database_url, make_app):
    return make_app(empty_database_url)


@pytest.fixture
def app(database_url, make_app):
    # Requested before make_app, so torn down after it: the tables are emptied once the app's
    # connections are closed.
    app = make_app(database_url)
    upgrade_to_head(app)  # a quick no-op when the shared database is already migrated
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def sql_for():
    """Runs SQL straight against a database, bypassing the app: to inspect what it stored."""
    engines = []

    def for_url(url: str):
        engine = create_engine(url)
        engines.append(engine)

        def run(statement: str, **params):
            with engine.connect() as connection:
                return connection.execute(text(statement), params).mappings().all()

        return run

    yield for_url
    for engine in engines:
        engine.dispose()


@pytest.fixture
def sql(app, sql_for):
    return sql_for(app.config["SQLALCHEMY_DATABASE_URI"])
