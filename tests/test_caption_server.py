"""`python -m caption_service` under gunicorn on the tiny demo model, over real HTTP."""

from __future__ import annotations

import base64
import io
import time

import pytest
import requests
from PIL import Image

from tests.helpers import ServerProcess


def png_bytes(color=(30, 120, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (80, 60), color).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.slow
def test_gunicorn_service_captions_over_http(demo_root):
    env = {"STUDIO_ROOT": str(demo_root), "STUDIO_DEMO": "1", "STUDIO_PASSWORD": "pw", "QWEN_HOST": "127.0.0.1",
           "CAPTION_IDLE_UNLOAD_S": "0"}
    auth = {"Authorization": "Bearer pw"}
    with ServerProcess("caption_service", env, port_var="QWEN_PORT", log_path=demo_root / "caption.log") as server:
        deadline = time.monotonic() + 60
        while (health := requests.get(server.url + "/health", timeout=5).json())["status"] == "loading":
            assert time.monotonic() < deadline, "the model never finished loading"
            time.sleep(0.1)
        assert health["status"] == "ready", health

        assert requests.post(server.url + "/caption", json={"image": "x"}, timeout=10).status_code == 401
        body = {"image": base64.b64encode(png_bytes()).decode(), "style": "short", "trigger_word": "ohwx",
                "max_tokens": 10}
        response = requests.post(server.url + "/caption", json=body, headers=auth, timeout=30)
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["caption"].startswith("ohwx, ") and result["tokens"] == 10

        files = {"file": ("a.png", png_bytes((200, 10, 10)), "image/png")}
        multipart = requests.post(server.url + "/caption", files=files, data={"max_tokens": "5"}, headers=auth,
                                  timeout=30)
        assert multipart.status_code == 200 and multipart.json()["tokens"] == 5

        url = requests.post(server.url + "/caption", json={"image": "http://127.0.0.1:1/x.png"}, headers=auth,
                            timeout=10)
        assert url.status_code == 422 and "never fetches URLs" in url.json()["error"]

        unloaded = requests.post(server.url + "/unload", headers=auth, timeout=30)
        assert unloaded.json() == {"status": "unloaded"}
        assert requests.get(server.url + "/health", timeout=5).json()["status"] == "unloaded"
        deadline = time.monotonic() + 60
        while (again := requests.post(server.url + "/caption", json=body, headers=auth, timeout=30)).status_code == 503:
            assert time.monotonic() < deadline and int(again.headers["Retry-After"]) > 0  # still loading
            time.sleep(0.2)
        assert again.status_code == 200 and again.json()["caption"] == result["caption"]
