"""Caption service: Qwen2.5-VL through llama-cpp-python, image bytes in, caption out (port 11435)."""

from __future__ import annotations

from flask import Flask, jsonify

from studio.settings import Settings
from studio.web import create_base_app


def create_app(settings: Settings | None = None) -> Flask:
    app = create_base_app(__name__, service="caption", title="Caption service", settings=settings)

    @app.get("/health")
    def health():
        return jsonify({"status": "unloaded", "service": "caption"})

    return app
