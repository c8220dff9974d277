"""Bulk Data export (SPEC §4): ``routes`` (the HTTP flow), ``params`` (kick-off parameters),
``exporter`` (the job rows and the NDJSON files the worker writes)."""
from __future__ import annotations

from flask import Flask

from . import exporter
from .routes import bp

__all__ = ["bp", "init_app"]


def init_app(app: Flask) -> None:
    exporter.init_app(app)
