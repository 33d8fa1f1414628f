import pytest

from giropops.config import HISTORY_LENGTH, MAX_STORED_PASSWORDS, Config, ConfigError


def test_defaults_match_the_original_app():
    config = Config.from_env({})
    assert (config.redis_host, config.redis_port, config.redis_db) == ("localhost", 6379, 0)
    assert config.redis_url is None and config.redis_password is None
    assert config.history_length == HISTORY_LENGTH == 10
    assert config.max_stored_passwords == MAX_STORED_PASSWORDS >= HISTORY_LENGTH


def test_reads_every_redis_variable():
    config = Config.from_env(
        {"REDIS_HOST": "redis-service", "REDIS_PORT": "6380", "REDIS_PASSWORD": "s3cret", "REDIS_DB": "2"}
    )
    assert (config.redis_host, config.redis_port, config.redis_password, config.redis_db) == (
        "redis-service", 6380, "s3cret", 2,
    )
    assert config.redis_target() == "redis-service:6380 db 2"


def test_accepts_a_redis_url():
    config = Config.from_env({"REDIS_URL": "redis://:pw@cache:6379/1"})
    assert config.redis_url == "redis://:pw@cache:6379/1"
    assert "pw" not in config.redis_target()


def test_empty_variables_count_as_unset():
    assert Config.from_env({"REDIS_HOST": "", "REDIS_PORT": " ", "REDIS_URL": ""}) == Config()


@pytest.mark.parametrize(
    "variable, value, expected",
    [
        ("REDIS_PORT", "abc", "REDIS_PORT must be an integer from 1 to 65535, got 'abc'"),
        ("REDIS_PORT", "0", "REDIS_PORT must be an integer from 1 to 65535, got 0"),
        ("REDIS_PORT", "70000", "REDIS_PORT must be an integer from 1 to 65535, got 70000"),
        ("REDIS_DB", "-1", "REDIS_DB must be an integer >= 0, got -1"),
        ("REDIS_DB", "one", "REDIS_DB must be an integer >= 0, got 'one'"),
    ],
)
def test_bad_numbers_are_named_in_the_error(variable, value, expected):
    with pytest.raises(ConfigError, match=expected):
        Config.from_env({variable: value})


def test_bad_url_scheme_is_refused_without_echoing_the_url():
    with pytest.raises(ConfigError, match="REDIS_URL must start with redis://") as raised:
        Config.from_env({"REDIS_URL": "http://:topsecret@cache"})
    assert "topsecret" not in str(raised.value)


def test_repr_hides_credentials():
    config = Config.from_env({"REDIS_URL": "redis://:topsecret@cache:6379/0", "REDIS_PASSWORD": "other-secret"})
    assert "topsecret" not in repr(config)
    assert "other-secret" not in repr(config)
