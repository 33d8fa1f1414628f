"""The Redis list of generated passwords."""

from __future__ import annotations

import logging

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from .config import Config

PASSWORDS_KEY = "senhas"
# Pooled connections idle for longer than this are PINGed before reuse, so a connection broken
# by a Redis restart is replaced instead of failing the next request.
HEALTH_CHECK_INTERVAL_SECONDS = 10

logger = logging.getLogger(__name__)


class StoreUnavailable(RuntimeError):
    """Redis did not answer (down, unreachable, refusing our password...)."""


def connect(config: Config) -> redis.Redis:
    """A client that connects lazily: the app starts, and recovers, without Redis being up."""
    options = dict(
        socket_timeout=config.redis_socket_timeout,
        socket_connect_timeout=config.redis_connect_timeout,
        health_check_interval=HEALTH_CHECK_INTERVAL_SECONDS,
        # Two quick reconnect attempts ride out a Redis restart; more would only delay the 503.
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        decode_responses=True,
    )
    if config.redis_password is not None:
        # Given with REDIS_URL too, it overrides a password written in the URL.
        options["password"] = config.redis_password
    if config.redis_url is not None:
        return redis.Redis.from_url(config.redis_url, **options)
    return redis.Redis(host=config.redis_host, port=config.redis_port, db=config.redis_db, **options)


class PasswordStore:
    """Newest first: LPUSH adds at the head, LTRIM drops the oldest beyond `max_stored`."""

    def __init__(
        self, client: redis.Redis, *, target: str, history_length: int, max_stored: int
    ) -> None:
        self._client = client
        self._target = target
        self._history_length = history_length
        self._max_stored = max_stored

    def add(self, password: str) -> None:
        try:
            with self._client.pipeline(transaction=True) as pipeline:
                pipeline.lpush(PASSWORDS_KEY, password)
                pipeline.ltrim(PASSWORDS_KEY, 0, self._max_stored - 1)
                pipeline.execute()
        except RedisError as error:
            raise self._unavailable("store a password", error) from error

    def latest(self) -> list[str]:
        try:
            return self._client.lrange(PASSWORDS_KEY, 0, self._history_length - 1)
        except RedisError as error:
            raise self._unavailable("read the latest passwords", error) from error

    def check(self) -> None:
        """Raises StoreUnavailable unless Redis answers a PING. Not logged: probes repeat it."""
        try:
            self._client.ping()
        except RedisError as error:
            raise StoreUnavailable(f"Redis at {self._target}: {error}") from error

    def _unavailable(self, action: str, error: RedisError) -> StoreUnavailable:
        logger.warning("could not %s: Redis at %s: %s", action, self._target, error)
        return StoreUnavailable(f"Redis at {self._target}: {error}")
