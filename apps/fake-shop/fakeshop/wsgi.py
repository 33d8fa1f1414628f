"""WSGI entry point: `gunicorn fakeshop.wsgi:app`, `flask --app fakeshop.wsgi ...`."""

from fakeshop import create_app

app = create_app()
