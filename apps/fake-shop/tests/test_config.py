"""Configuration from the environment."""

import logging
import os
import subprocess
import sys
import tempfile

import pytest

from fakeshop import config, create_app
from tests.test_migrations import APP_DIR


def url_for_env(tmp_path, **environ):
    return config.database_url_from_env(environ, str(tmp_path / "instance"))


def test_no_database_settings_means_an_embedded_sqlite_file_in_the_instance_folder(tmp_path):
    assert url_for_env(tmp_path) == f"sqlite:///{tmp_path / 'instance' / 'fakeshop.sqlite3'}"
    assert (tmp_path / "instance").is_dir()


def test_unwritable_instance_folder_falls_back_to_the_temporary_directory(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    url = config.database_url_from_env({}, str(blocker / "instance"))
    assert url == f"sqlite:///{tmp_path / 'fakeshop.sqlite3'}"


def test_any_db_variable_selects_postgresql_with_the_original_defaults(tmp_path):
    assert url_for_env(tmp_path, DB_HOST="db") == "postgresql+psycopg://ecommerce:Pg1234@db:5432/ecommerce"


def test_db_variables_are_used_and_escaped(tmp_path):
    url = url_for_env(tmp_path, DB_HOST="pg.internal", DB_PORT="6543", DB_USER="shop",
                      DB_PASSWORD="p@ss:w/rd", DB_NAME="store")
    assert url == "postgresql+psycopg://shop:p%40ss%3Aw%2Frd@pg.internal:6543/store"


def test_database_url_wins_and_plain_postgres_urls_use_psycopg_3(tmp_path):
    assert url_for_env(tmp_path, DATABASE_URL="postgres://u:p@h/d", DB_HOST="ignored") == \
        "postgresql+psycopg://u:p@h/d"
    assert url_for_env(tmp_path, DATABASE_URL="sqlite:////data/x.db") == "sqlite:////data/x.db"


@pytest.mark.parametrize("port", ["fifty", "0", "70000", "-1", "²", "9" * 5000])
def test_bad_db_port_names_the_variable(tmp_path, port):
    with pytest.raises(config.ConfigError, match="DB_PORT must be a TCP port number"):
        url_for_env(tmp_path, DB_PORT=port)


def test_request_size_limit_is_64_kib_unless_set():
    assert config.config_from_env({})["MAX_CONTENT_LENGTH"] == 64 * 1024
    assert config.config_from_env({"MAX_CONTENT_LENGTH": " 1048576 "})["MAX_CONTENT_LENGTH"] == 1048576


@pytest.mark.parametrize("variable, value", [
    ("MAX_CONTENT_LENGTH", "0"), ("MAX_CONTENT_LENGTH", "64k"), ("MAX_CONTENT_LENGTH", "²"),
    ("MAX_CONTENT_LENGTH", "9" * 5000), ("DB_WAIT_TIMEOUT", "-1"), ("DB_WAIT_TIMEOUT", "²"),
])
def test_bad_numbers_name_the_variable(variable, value):
    with pytest.raises(config.ConfigError, match=f"{variable} must be a whole number of"):
        config.config_from_env({variable: value})


def test_bad_database_url_names_the_variable(tmp_path):
    with pytest.raises(config.ConfigError, match="DATABASE_URL is not a database URL"):
        url_for_env(tmp_path, DATABASE_URL="not a url")


def test_engine_options_recover_from_dropped_connections():
    assert config.engine_options("postgresql+psycopg://u@h/d") == {
        "pool_pre_ping": True, "connect_args": {"connect_timeout": 5}}
    assert config.engine_options("sqlite:///x.db")["pool_pre_ping"] is True


def test_secret_key_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SECRET_KEY", "from-the-environment")
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/x.db"})
    assert app.secret_key == "from-the-environment"
    assert app.debug is False


def test_missing_secret_key_gets_a_random_one_and_a_warning(monkeypatch, tmp_path, caplog):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with caplog.at_level(logging.WARNING):
        first = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/x.db"})
        second = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/x.db"})
    assert len(first.secret_key) >= 32 and first.secret_key != second.secret_key
    assert "SECRET_KEY is not set" in caplog.text
    assert first.secret_key not in caplog.text


def test_debug_mode_is_refused(monkeypatch):
    monkeypatch.setenv("FLASK_DEBUG", "1")
    with pytest.raises(RuntimeError, match="never runs in debug mode"):
        create_app()


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("DB_", "DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR"))}
    return subprocess.run([sys.executable, "-c", code], cwd=APP_DIR, env={**environment, **env},
                          capture_output=True, text=True, timeout=120)


def test_wsgi_module_imports_with_nothing_configured(tmp_path):
    instance_folder = APP_DIR / "instance"
    had_instance_folder = instance_folder.exists()
    result = run_python("import fakeshop.wsgi as w; print(w.app.config['SQLALCHEMY_DATABASE_URI'])",
                        TMPDIR=str(tmp_path))
    if not had_instance_folder and instance_folder.is_dir() and not any(instance_folder.iterdir()):
        instance_folder.rmdir()  # leave the working tree as it was
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("sqlite:///")
    assert "SECRET_KEY is not set" in result.stderr


def test_missing_metrics_directory_is_a_clear_error(tmp_path):
    result = run_python("import fakeshop.wsgi", PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "absent"))
    assert result.returncode != 0
    assert "PROMETHEUS_MULTIPROC_DIR" in result.stderr and "is not a directory" in result.stderr
