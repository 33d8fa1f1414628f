"""Prometheus metrics, correct under several gunicorn worker processes.

gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR before any worker imports prometheus_client, so
every worker writes its samples to files there and `/metrics` adds them up whichever worker
answers. Without that variable (tests, `flask run`) the process's own registry is used.
"""

from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry, Counter
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# Exposed as `senha_gerada_total`, the name the original app's dashboards use.
PASSWORDS_GENERATED = Counter("senha_gerada", "Passwords generated and stored")


def render(accept_header: str | None) -> tuple[bytes, str]:
    """The exposition body and its content type, in the format the scraper asked for."""
    if os.environ.get(MULTIPROCESS_DIR_VARIABLE):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    encode, content_type = choose_encoder(accept_header or "")
    return encode(registry), content_type
