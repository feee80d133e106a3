"""Dataset manager: upload, gallery, captions, bulk auto-caption, export (port 3000)."""

from __future__ import annotations

from flask import Flask, jsonify, render_template

from studio.settings import Settings
from studio.web import create_base_app


def create_app(settings: Settings | None = None) -> Flask:
    app = create_base_app(__name__, service="datasets", title="Datasets", settings=settings)

    @app.get("/health")
    def health():
        return jsonify({"status": "ok", "service": "datasets"})

    @app.get("/")
    def index():
        return render_template("datasets_index.html")

    return app
