"""A link whose connection keeps breaking off goes on from the bytes that arrived (HTTP Range, checked with If-Range)
instead of starting over, when the server allows it; a file that changed meanwhile is fetched whole again, and a
server without byte ranges still gets the sentence it got before. A local server stands in for a flaky web."""

from __future__ import annotations

import random
import re
from http.server import BaseHTTPRequestHandler

import pytest

import app as datasets_app
from tests.helpers import serving
from tests.test_datasets_support import image_bytes, wait_job, zip_bytes

CUT = 300_000  # each answer breaks off after this many bytes
BIG = zip_bytes([(f"set/{i}.png", image_bytes(i, size=(256, 256))) for i in range(40)]
                + [("set/noise.bin", random.Random(0).randbytes(1_200_000))])  # about 1.3 MB: five pieces


def flaky_handler(body: bytes, ranges: bool = True):
    class Handler(BaseHTTPRequestHandler):
        asked: list[str | None] = []
        etag = '"v1"'

        def do_GET(self):  # noqa: N802 - the standard library's name
            wanted = self.headers.get("Range")
            Handler.asked.append(wanted)
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", wanted or "")
            if ranges and match and self.headers.get("If-Range") == Handler.etag:
                start = int(match.group(1))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(body) - start))
            if ranges:
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", Handler.etag)
            self.end_headers()
            self.wfile.write(body[start:start + CUT])  # then the connection breaks off
            self.close_connection = True

        def log_message(self, *args):
            return

    return Handler


@pytest.fixture
def lan_client(make_settings):
    return datasets_app.create_app(make_settings(ALLOW_PRIVATE_URLS="1", MAX_UPLOAD_MB="20")).test_client()


def _import(client, url: str) -> tuple[dict, str]:
    dataset_id = client.post("/api/datasets", json={"name": "Flaky", "trigger_word": "tok"}).get_json()["id"]
    response = client.post(f"/api/datasets/{dataset_id}/import-url", json={"url": url})
    assert response.status_code == 202, response.get_json()
    return wait_job(client, f"/api/datasets/{dataset_id}/imports/{response.get_json()['id']}", timeout=60), dataset_id


def test_a_download_that_keeps_breaking_off_goes_on_where_it_stopped(lan_client):
    handler = flaky_handler(BIG)
    with serving(handler) as url:
        job, dataset_id = _import(lan_client, f"{url}/set.zip")
    assert job["status"] == "completed", job
    images = lan_client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]
    assert len(images) == 40 and len(BIG) > 4 * CUT
    pieces = -(-len(BIG) // CUT)
    assert handler.asked == [None] + [f"bytes={CUT * i}-" for i in range(1, pieces)]  # never from zero again
    assert job["bytes_done"] == len(BIG)


def test_a_server_without_byte_ranges_still_says_where_it_stopped(lan_client):
    handler = flaky_handler(BIG, ranges=False)
    with serving(handler) as url:
        job, dataset_id = _import(lan_client, f"{url}/set.zip")
    assert job["status"] == "failed" and handler.asked == [None]
    assert re.search(r"The download of set\.zip stopped at [\d.]+ KB of [\d.]+ MB: 127\.0\.0\.1 closed the "
                     r"connection\. Try again\.", job["error"]), job["error"]
    assert lan_client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"] == []


def test_a_file_that_changed_between_two_pieces_is_fetched_whole_again(lan_client):
    handler = flaky_handler(BIG)
    handler.etag = '"v0"'  # the first answer's version: If-Range no longer matches once it is "v1"

    class Changing(handler):
        def do_GET(self):  # noqa: N802
            super().do_GET()
            handler.etag = '"v1"'

    with serving(Changing) as url:
        job, _ = _import(lan_client, f"{url}/set.zip")
    assert job["status"] == "completed", job
    assert handler.asked[1] == f"bytes={CUT}-"  # asked to go on, got the whole (new) file from the start
