"""Entry point for gunicorn: `gunicorn --config gunicorn.conf.py giropops.wsgi:app`."""

import logging

from giropops import create_app

# Send the app's warnings (Redis outages) through gunicorn's error log, to stderr.
_gunicorn_log = logging.getLogger("gunicorn.error")
_app_log = logging.getLogger("giropops")
_app_log.handlers = _gunicorn_log.handlers
_app_log.setLevel(_gunicorn_log.level)

app = create_app()
