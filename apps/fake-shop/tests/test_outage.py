"""The database going away and coming back, with the same app (and connection pool) throughout."""

from fakeshop.database import upgrade_to_head
from tests.support import wait_until

RECOVERY_TIMEOUT = 60


def test_database_outage_gives_503_then_recovers(make_app, pg_database_url, postgres):
    app = make_app(pg_database_url)
    upgrade_to_head(app)
    client = app.test_client()
    assert client.post("/add_to_cart/1", data={"quantity": "1"}).status_code == 302
    assert client.get("/cart").status_code == 200  # the pool now holds a live connection

    postgres.stop()
    try:
        for path in ["/", "/shop", "/detail/1", "/cart"]:
            response = client.get(path)
            assert response.status_code == 503, path
            assert b"cannot reach its database" in response.data
            assert response.headers["Retry-After"]
        assert client.post("/add_to_cart/2", data={"quantity": "1"}).status_code == 503
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200  # alive: no reason to restart the process
    finally:
        postgres.start()

    wait_until(lambda: client.get("/readyz").status_code == 200, RECOVERY_TIMEOUT, "the app to be ready again")
    page = client.get("/cart")
    assert page.status_code == 200 and b"HD Webcam" in page.data  # the cart survived the outage
    assert client.post("/add_to_cart/2", data={"quantity": "1"}).status_code == 302
