"""The model-download banners as JSON, so a page opened while the models download keeps its banner current.

Every page renders the banners once (studio.web); studio/static/model_banners.js asks this route again every few
seconds while a download banner shows, and takes it away when the models are ready. Behind the password like
every other route.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify

log = logging.getLogger(__name__)

ROUTE = "/_studio/model-banners"
MODEL_BANNER_IDS = ("models-error", "models-retry", "models")  # what studio.model_status.banners() gives


def model_banners_view():
    from studio.model_status import banners

    try:
        found = banners(current_app.config["STUDIO_SETTINGS"])
    except Exception:  # a broken status file must never break the page that asks
        log.exception("could not read the model download status")
        found = []
    response = jsonify({"banners": found, "ids": list(MODEL_BANNER_IDS)})
    response.headers["Cache-Control"] = "no-store"
    return response


def register(app: Flask) -> None:
    app.add_url_rule(ROUTE, "model_banners", model_banners_view, methods=["GET"])
