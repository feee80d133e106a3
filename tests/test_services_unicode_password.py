"""The services call one another with the studio's password however it is spelled: a password with letters outside
Latin-1 (密码, an emoji) used to raise UnicodeEncodeError in the worker's call to the caption service (the training
job failed before it began) and in auto-caption's and Express's requests."""

from __future__ import annotations

import logging

import pytest
import requests

import caption_service
from app import autocaption
from tests.helpers import serving_app
from tests.test_security_password_forms import UNICODE_PASSWORD
from trainer.worker import Worker


@pytest.fixture
def caption_url(make_settings):
    with serving_app(caption_service.create_app(make_settings(STUDIO_PASSWORD=UNICODE_PASSWORD))) as url:
        yield url


def test_the_worker_and_auto_caption_reach_the_caption_service_with_a_unicode_password(make_settings, caption_url,
                                                                                        caplog):
    settings = make_settings(STUDIO_PASSWORD=UNICODE_PASSWORD, CAPTION_URL=caption_url)
    caplog.set_level(logging.INFO, logger="trainer.worker")
    Worker(settings, unload_caption=True).ask_caption_service_to_unload()  # raised UnicodeEncodeError
    assert "caption service unloaded its model (HTTP 200)" in caplog.text
    answer = requests.post(f"{caption_url}/unload", json={}, headers=autocaption._headers(settings), timeout=10)
    assert answer.status_code == 200, answer.text
    wrong = make_settings(STUDIO_PASSWORD="pässwörd 密码 🔒", CAPTION_URL=caption_url)
    assert requests.post(f"{caption_url}/unload", json={}, headers=autocaption._headers(wrong),
                         timeout=10).status_code == 401
