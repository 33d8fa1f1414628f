"""Redis going away and coming back, with the same app (and so the same connection pool)."""

import pytest

from conftest import RedisServer, counter_value
from giropops import create_app
from giropops.config import Config

UNAVAILABLE = "the password store (Redis) is unavailable; try again in a few seconds"


@pytest.fixture
def outage_client(redis_outage, redis_client):
    app = create_app(Config(redis_url=redis_outage.url))
    return app.test_client()


def test_everything_answers_503_while_redis_is_down_and_recovers(outage_client, redis_outage):
    client = outage_client
    # Warm the pool first, so recovery must also get rid of connections that Redis closed.
    assert client.post("/api/gerar-senha", json={"tamanho": 12}).status_code == 200
    counter_before = counter_value(client)

    redis_outage.stop()

    response = client.post("/api/gerar-senha", json={"tamanho": 12})
    assert response.status_code == 503
    assert response.get_json() == {"error": UNAVAILABLE}
    response = client.get("/api/senhas")
    assert response.status_code == 503
    assert response.get_json() == {"error": UNAVAILABLE}
    response = client.post("/", data={"tamanho": "12"})
    assert response.status_code == 503
    assert UNAVAILABLE in response.get_data(as_text=True)
    assert 'id="senha"' not in response.get_data(as_text=True)
    response = client.get("/")
    assert response.status_code == 503
    assert UNAVAILABLE in response.get_data(as_text=True)
    assert client.get("/readyz").status_code == 503
    assert client.get("/readyz").get_json()["status"] == "unavailable"
    assert client.get("/healthz").status_code == 200
    # Nothing was generated, so nothing was counted.
    assert counter_value(client) == counter_before

    redis_outage.start()

    assert client.get("/readyz").status_code == 200
    response = client.post("/api/gerar-senha", json={"tamanho": 12})
    assert response.status_code == 200
    assert client.get("/api/senhas").get_json() == [{"id": 1, "senha": response.get_json()["senha"]}]
    assert client.get("/").status_code == 200


def test_bad_input_stays_400_while_redis_is_down(outage_client, redis_outage):
    redis_outage.stop()
    response = outage_client.post("/api/gerar-senha", json={"tamanho": 500})
    assert response.status_code == 400
    assert outage_client.post("/", data={"tamanho": "x"}).status_code == 400


def test_app_starts_without_redis_and_serves_once_it_appears(redis_binary, tmp_path):
    server = RedisServer(redis_binary, tmp_path)
    client = create_app(Config(redis_url=server.url)).test_client()
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200
    server.start()
    try:
        assert client.get("/readyz").status_code == 200
        assert client.post("/api/gerar-senha", json={}).status_code == 200
    finally:
        server.stop()


@pytest.fixture
def password_protected_redis(redis_binary, tmp_path):
    server = RedisServer(redis_binary, tmp_path, password="correct horse")
    server.start()
    yield server
    server.stop()


def test_redis_password_from_config(password_protected_redis):
    server = password_protected_redis
    config = Config(redis_host="127.0.0.1", redis_port=server.port, redis_password=server.password)
    client = create_app(config).test_client()
    assert client.post("/api/gerar-senha", json={"tamanho": 12}).status_code == 200
    assert client.get("/readyz").status_code == 200


def test_wrong_redis_password_is_a_503_not_a_500(password_protected_redis):
    server = password_protected_redis
    config = Config(redis_host="127.0.0.1", redis_port=server.port, redis_password="wrong")
    client = create_app(config).test_client()
    assert client.post("/api/gerar-senha", json={"tamanho": 12}).status_code == 503
    assert client.get("/readyz").status_code == 503
