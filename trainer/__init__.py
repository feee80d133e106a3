"""Trainer: Z-Image-Turbo LoRA jobs, queue, worker, live progress (port 8675)."""

from __future__ import annotations

from flask import Flask, jsonify, render_template

from studio.settings import Settings
from studio.web import create_base_app


def create_app(settings: Settings | None = None) -> Flask:
    app = create_base_app(__name__, service="trainer", title="Trainer", settings=settings)

    @app.get("/health")
    def health():
        return jsonify({"status": "ok", "service": "trainer"})

    @app.get("/")
    def index():
        return render_template("trainer_index.html")

    return app
