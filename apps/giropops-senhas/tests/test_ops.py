import pytest

from conftest import counter_value


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_when_redis_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready"}


def test_metrics_use_the_prometheus_text_format(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE senha_gerada_total counter" in response.get_data(as_text=True)


def test_metrics_honour_an_openmetrics_scraper(client):
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert response.get_data(as_text=True).rstrip().endswith("# EOF")


@pytest.mark.parametrize(
    "generate",
    [
        lambda client: client.post("/api/gerar-senha", json={"tamanho": 12}),
        lambda client: client.post("/", data={"tamanho": "12"}),
    ],
    ids=["api", "form"],
)
def test_counter_counts_each_generated_password(client, generate):
    before = counter_value(client)
    assert generate(client).status_code == 200
    assert counter_value(client) == before + 1


def test_counter_ignores_refused_requests(client):
    before = counter_value(client)
    assert client.post("/api/gerar-senha", json={"tamanho": 1}).status_code == 400
    assert client.post("/", data={"tamanho": "x"}).status_code == 400
    assert counter_value(client) == before
