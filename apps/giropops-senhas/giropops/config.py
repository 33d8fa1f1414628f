"""Settings read from the environment once, when the app is created."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

# How many passwords `GET /` and `GET /api/senhas` show.
HISTORY_LENGTH = 10
# The Redis list is trimmed to this many entries on every write, so it cannot grow forever.
MAX_STORED_PASSWORDS = 100

_REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://")


class ConfigError(ValueError):
    """An environment variable holds a value the app cannot use."""


@dataclass(frozen=True)
class Config:
    # repr=False: both may carry the Redis password, and a Config may end up in a log line.
    redis_url: str | None = field(default=None, repr=False)
    redis_password: str | None = field(default=None, repr=False)
    redis_host: str = "localhost"
    redis_port: int = 6379
    redis_db: int = 0
    # Short timeouts so a request fails fast with a 503 instead of hanging when Redis is away.
    redis_socket_timeout: float = 2.0
    redis_connect_timeout: float = 1.0
    history_length: int = HISTORY_LENGTH
    max_stored_passwords: int = MAX_STORED_PASSWORDS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ
        redis_url = env.get("REDIS_URL") or None
        if redis_url is not None and not redis_url.startswith(_REDIS_URL_SCHEMES):
            # The URL itself is not echoed: it may contain the password.
            raise ConfigError(
                "REDIS_URL must start with redis://, rediss:// or unix:// "
                "(for example redis://:PASSWORD@HOST:6379/0); unset it to use REDIS_HOST/REDIS_PORT"
            )
        return cls(
            redis_url=redis_url,
            redis_password=env.get("REDIS_PASSWORD") or None,
            redis_host=env.get("REDIS_HOST") or "localhost",
            redis_port=_int_from_env(env, "REDIS_PORT", default=6379, lowest=1, highest=65535),
            redis_db=_int_from_env(env, "REDIS_DB", default=0, lowest=0, highest=None),
        )

    def redis_target(self) -> str:
        """Where Redis is expected, without credentials, for log and error messages."""
        if self.redis_url is not None:
            return "the server named by REDIS_URL"
        return f"{self.redis_host}:{self.redis_port} db {self.redis_db}"


def _int_from_env(
    env: Mapping[str, str], name: str, *, default: int, lowest: int, highest: int | None
) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    allowed = f"an integer from {lowest} to {highest}" if highest is not None else f"an integer >= {lowest}"
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be {allowed}, got {raw!r}; fix or unset it") from None
    if value < lowest or (highest is not None and value > highest):
        raise ConfigError(f"{name} must be {allowed}, got {value}; fix or unset it")
    return value
