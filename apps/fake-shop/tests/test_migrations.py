"""Migrations: idempotent, safe in parallel, and what readiness says before and after."""

import os
import subprocess
import sys
from pathlib import Path

from alembic import command

from fakeshop.database import head_revision, migrate, upgrade_to_head
from tests.support import free_port

APP_DIR = Path(__file__).resolve().parent.parent
MIGRATE_TIMEOUT = 180


def run_migrate(database_url: str, **env) -> subprocess.Popen:
    environment = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "test-secret", **env}
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.Popen([sys.executable, "-m", "fakeshop.migrate"], cwd=APP_DIR, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=MIGRATE_TIMEOUT)
    return process.returncode, output


def schema_state(sql):
    products = sql("SELECT name FROM products")
    versions = sql("SELECT version_num FROM alembic_version")
    return len(products), len({row["name"] for row in products}), [row["version_num"] for row in versions]


def test_readyz_is_503_before_migrations_and_200_after(unmigrated_app):
    client = unmigrated_app.test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert b"python -m fakeshop.migrate" in response.data
    # Pages say the shop is unavailable rather than crashing.
    page = client.get("/shop")
    assert page.status_code == 503 and page.headers["Retry-After"]
    assert client.get("/healthz").status_code == 200

    upgrade_to_head(unmigrated_app)
    assert client.get("/readyz").status_code == 200
    assert client.get("/shop").status_code == 200


def test_running_the_migrations_twice_changes_nothing(unmigrated_app, sql_for):
    sql = sql_for(unmigrated_app.config["SQLALCHEMY_DATABASE_URI"])
    upgrade_to_head(unmigrated_app)
    assert schema_state(sql) == (9, 9, [head_revision()])
    upgrade_to_head(unmigrated_app)
    assert schema_state(sql) == (9, 9, [head_revision()])


def test_downgrade_and_upgrade_again_leaves_one_catalogue(unmigrated_app, sql_for):
    sql = sql_for(unmigrated_app.config["SQLALCHEMY_DATABASE_URI"])
    upgrade_to_head(unmigrated_app)
    with unmigrated_app.app_context():
        command.downgrade(migrate.get_config(), "base")
    assert sql("SELECT version_num FROM alembic_version") == []
    upgrade_to_head(unmigrated_app)
    assert schema_state(sql) == (9, 9, [head_revision()])


def test_migrate_command_succeeds_and_is_a_no_op_the_second_time(empty_database_url, sql_for):
    first = finish(run_migrate(empty_database_url))
    assert first[0] == 0, first[1]
    assert "Running upgrade  -> 0001" in first[1]
    second = finish(run_migrate(empty_database_url))
    assert second[0] == 0, second[1]
    assert "Running upgrade" not in second[1]
    assert schema_state(sql_for(empty_database_url)) == (9, 9, [head_revision()])


def test_migrations_from_two_processes_at_once_on_postgresql(pg_database_url, sql_for):
    # Two replicas starting together on an empty database: both must succeed, one catalogue.
    replicas = [run_migrate(pg_database_url) for _ in range(2)]
    results = [finish(process) for process in replicas]
    for returncode, output in results:
        assert returncode == 0, output
    assert sum("Running upgrade  -> 0001" in output for _, output in results) == 1
    assert schema_state(sql_for(pg_database_url)) == (9, 9, [head_revision()])


def test_migrate_command_fails_loudly_when_the_database_is_unreachable():
    url = f"postgresql+psycopg://shop:very-secret-pw@127.0.0.1:{free_port()}/shop"
    returncode, output = finish(run_migrate(url, DB_WAIT_TIMEOUT="0"))
    assert returncode == 1
    assert "cannot reach the database" in output and "DB_HOST" in output
    assert "very-secret-pw" not in output


def test_migrate_command_fails_on_bad_configuration():
    returncode, output = finish(run_migrate("", DB_PORT="fifty"))
    assert returncode == 1
    assert "DB_PORT must be a TCP port number" in output


def test_flask_db_upgrade_works_too_from_any_directory(tmp_path, sql_for):
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    environment = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": "test-secret", "PYTHONPATH": str(APP_DIR)}
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "fakeshop.wsgi", "db", "upgrade"],
                            cwd=tmp_path, env=environment, capture_output=True, text=True,
                            timeout=MIGRATE_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert schema_state(sql_for(url)) == (9, 9, [head_revision()])
