"""WSGI entry point: gunicorn --chdir demo gunicorn_app:app"""

from shop.web import app

__all__ = ["app"]
