import json
import string

import pytest

from giropops.config import MAX_STORED_PASSWORDS
from giropops.passwords import MAX_LENGTH, MIN_LENGTH
from giropops.store import PASSWORDS_KEY

FULL_REQUEST = {"tamanho": 12, "incluir_numeros": True, "incluir_caracteres_especiais": True}


def generate(client, payload):
    return client.post("/api/gerar-senha", json=payload)


def test_generates_the_requested_password(client):
    response = generate(client, FULL_REQUEST)
    assert response.status_code == 200
    assert response.is_json
    password = response.get_json()["senha"]
    assert len(password) == 12
    assert any(c in string.digits for c in password)
    assert any(c in string.punctuation for c in password)


def test_missing_fields_take_the_original_defaults(client):
    password = generate(client, {}).get_json()["senha"]
    assert len(password) == 8
    assert set(password) <= set(string.ascii_letters)


def test_flags_false_means_letters_only(client):
    payload = {"tamanho": 40, "incluir_numeros": False, "incluir_caracteres_especiais": False}
    assert set(generate(client, payload).get_json()["senha"]) <= set(string.ascii_letters)


@pytest.mark.parametrize("length", [MIN_LENGTH, MAX_LENGTH])
def test_accepts_the_range_bounds(client, length):
    response = generate(client, {**FULL_REQUEST, "tamanho": length})
    assert response.status_code == 200
    assert len(response.get_json()["senha"]) == length


def test_stores_the_password_in_the_redis_list(client, redis_client):
    password = generate(client, FULL_REQUEST).get_json()["senha"]
    assert redis_client.lrange(PASSWORDS_KEY, 0, -1) == [password]


def test_lists_the_latest_ten_newest_first(client):
    generated = [generate(client, FULL_REQUEST).get_json()["senha"] for _ in range(12)]
    response = client.get("/api/senhas")
    assert response.status_code == 200
    assert response.get_json() == [
        {"id": number, "senha": password} for number, password in enumerate(reversed(generated[-10:]), 1)
    ]


def test_lists_nothing_before_the_first_password(client):
    assert client.get("/api/senhas").get_json() == []


def test_the_redis_list_is_trimmed(client, redis_client):
    # Pre-fill to the limit so the test needs only a few requests to go past it.
    redis_client.rpush(PASSWORDS_KEY, *[f"old-{n}" for n in range(MAX_STORED_PASSWORDS)])
    newest = [generate(client, FULL_REQUEST).get_json()["senha"] for _ in range(3)]
    stored = redis_client.lrange(PASSWORDS_KEY, 0, -1)
    assert len(stored) == MAX_STORED_PASSWORDS
    assert stored[:3] == newest[::-1]
    assert stored[-1] == f"old-{MAX_STORED_PASSWORDS - 4}"


@pytest.mark.parametrize(
    "payload, expected_error",
    [
        ({"tamanho": "doze"}, "'tamanho' must be an integer from 4 to 128, got a JSON string"),
        ({"tamanho": "12"}, "'tamanho' must be an integer from 4 to 128, got a JSON string"),
        ({"tamanho": 12.5}, "'tamanho' must be an integer from 4 to 128, got a JSON number (12.5)"),
        ({"tamanho": True}, "'tamanho' must be an integer from 4 to 128, got a JSON boolean"),
        ({"tamanho": None}, "'tamanho' must be an integer from 4 to 128, got a JSON null"),
        ({"tamanho": [12]}, "'tamanho' must be an integer from 4 to 128, got a JSON array"),
        ({"tamanho": MIN_LENGTH - 1}, "'tamanho' must be an integer from 4 to 128, got 3"),
        ({"tamanho": MAX_LENGTH + 1}, "'tamanho' must be an integer from 4 to 128, got 129"),
        ({"tamanho": -12}, "'tamanho' must be an integer from 4 to 128, got -12"),
        ({"tamanho": 10**30}, "'tamanho' must be an integer from 4 to 128, got 10000000000000000000..."),
        ({"incluir_numeros": "true"}, "'incluir_numeros' must be true or false, got a JSON string"),
        ({"incluir_numeros": 1}, "'incluir_numeros' must be true or false, got a JSON number (1)"),
        ({"incluir_caracteres_especiais": None}, "'incluir_caracteres_especiais' must be true or false, got a JSON null"),
        ({"tamano": 12}, "unknown field(s) 'tamano'"),
        ([12, True, True], "the body must be a JSON object"),
        ("12", "the body must be a JSON object"),
        (None, "the body must be a JSON object"),
    ],
)
def test_bad_json_values_are_400_with_a_clear_error(client, redis_client, payload, expected_error):
    response = client.post("/api/gerar-senha", data=json.dumps(payload), content_type="application/json")
    assert response.status_code == 400
    assert response.is_json
    assert expected_error in response.get_json()["error"]
    assert redis_client.llen(PASSWORDS_KEY) == 0


@pytest.mark.parametrize(
    "data, content_type, expected_error",
    [
        (json.dumps(FULL_REQUEST), None, "the Content-Type must be application/json, got 'none'"),
        (json.dumps(FULL_REQUEST), "text/plain", "the Content-Type must be application/json, got 'text/plain'"),
        ("tamanho=12", "application/x-www-form-urlencoded", "the Content-Type must be application/json"),
        ('{"tamanho": 12', "application/json", "the body is not valid JSON (Expecting"),
        ("{'tamanho': 12}", "application/json", "the body is not valid JSON"),
        ("", "application/json", "the request body is empty"),
        ("   ", "application/json", "the request body is empty"),
        (b"\xff\xfe\xfa", "application/json", "the body is not usable JSON"),
        ('{"tamanho": ' + "9" * 5000 + "}", "application/json", "the body is not usable JSON"),
    ],
)
def test_unusable_bodies_are_400_json_never_500(client, data, content_type, expected_error):
    response = client.post("/api/gerar-senha", data=data, content_type=content_type)
    assert response.status_code == 400
    assert response.is_json
    assert expected_error in response.get_json()["error"]


def test_deeply_nested_json_is_a_400(client):
    # Python 3.11 gives up with a RecursionError, 3.13 parses it; either way it is not a 500.
    response = client.post("/api/gerar-senha", data="[" * 8_000 + "]" * 8_000, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]


def test_oversized_body_is_refused_as_json(client):
    response = client.post("/api/gerar-senha", data=b"{" + b" " * 20_000 + b"}", content_type="application/json")
    assert response.status_code == 413
    assert "error" in response.get_json()


@pytest.mark.parametrize(
    "method, path, status",
    [("GET", "/api/gerar-senha", 405), ("DELETE", "/api/senhas", 405), ("GET", "/api/nada", 404)],
)
def test_unknown_api_routes_and_methods_answer_json(client, method, path, status):
    response = client.open(path, method=method)
    assert response.status_code == status
    assert response.is_json
    assert response.get_json()["error"]


def test_api_answers_are_not_cacheable(client):
    assert generate(client, FULL_REQUEST).headers["Cache-Control"] == "no-store"
    assert client.get("/api/senhas").headers["Cache-Control"] == "no-store"
