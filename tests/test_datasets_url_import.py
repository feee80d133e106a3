"""Import from a link: a ZIP or an image the pod downloads itself goes through the same import as an upload;
share pages of common hosts become their direct download; web pages, errors, oversize files and private
addresses (the pod's own services, a cloud's metadata service) each get a sentence, and every redirect hop is
checked before it is fetched. A real HTTP server on this machine stands in for the web."""

from __future__ import annotations

import socket
import threading
from http.server import ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

import app as datasets_app
from app import link_fetch, url_import
from tests import test_datasets_support as support
from tests.helpers import files_handler, serving
from tests.parquet_files import HF_FEATURES, parquet_bytes
from tests.test_datasets_image_formats import heic_photo
from tests.test_datasets_support import image_bytes, wait_job, zip_bytes
from tests.videos import video_bytes

ds_app, client = support.ds_app, support.client

FILES = {
    "/set.zip": ("application/zip", {}, zip_bytes([("set/a.png", image_bytes(1, size=(96, 96))),
                                                   ("set/a.txt", b"tok, a red square"),
                                                   ("set/b.png", image_bytes(2, size=(96, 96)))])),
    "/photo": ("image/png", {"Content-Disposition": 'attachment; filename="cat photo.png"'}, image_bytes(3)),
    "/wrong.png": ("image/jpeg", {}, image_bytes(4, fmt="JPEG")),
    "/share": ("text/html; charset=utf-8", {}, b"<!doctype html><html><body>Download</body></html>"),
    "/big.zip": ("application/zip", {}, b"PK\x03\x04" + b"\0" * (2 * 2**20)),
    "/rows": ("application/octet-stream", {},
              parquet_bytes([{"image": (image_bytes(5), "row.png"), "text": "tok, a row"}], features=HF_FEATURES)),
    "/clip": ("application/octet-stream", {}, video_bytes([1, 2])),  # named by what it holds: clip.mp4
    "/walk.mp4": ("video/mp4", {}, video_bytes([1, 2, 3, 4], seconds_each=1.0, sharp_at=3)),  # a scene a second
    "/IMG_0007.HEIC": ("image/heic", {}, heic_photo(orientation=None)),
    "/scan": ("image/tiff", {}, image_bytes(6, fmt="TIFF")),
    "/cut.zip": ("application/zip", {"Content-Length": "400000"}, b"PK\x03\x04" + b"\0" * 100_000),  # cut short
}
REDIRECTS = {"/r1": "/r2", "/r2": "/set.zip", "/to-secret": "/secret", "/loop": "/loop"}


Handler = files_handler(FILES, REDIRECTS)


@pytest.fixture(scope="module")
def web():
    with serving(Handler) as url:
        yield url


@pytest.fixture
def lan_client(make_settings):
    """A studio that may fetch from this machine (the stand-in web is on 127.0.0.1)."""
    return datasets_app.create_app(make_settings(ALLOW_PRIVATE_URLS="1", MAX_UPLOAD_MB="1")).test_client()


def _dataset(client) -> str:
    return client.post("/api/datasets", json={"name": "Linked", "trigger_word": "tok"}).get_json()["id"]


def _import(client, dataset_id: str, url: str) -> dict:
    response = client.post(f"/api/datasets/{dataset_id}/import-url", json={"url": url})
    assert response.status_code == 202, response.get_json()
    return wait_job(client, f"/api/datasets/{dataset_id}/imports/{response.get_json()['id']}")


def _names(client, dataset_id) -> list[str]:
    return [i["name"] for i in client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]]


def test_a_zip_an_image_and_a_redirect_import_like_uploads(lan_client, web):
    dataset_id = _dataset(lan_client)
    job = _import(lan_client, dataset_id, f"{web}/set.zip")
    assert job["status"] == "completed", job
    assert job["result"]["source"] == {"url": f"{web}/set.zip", "file": "set.zip"}
    assert _names(lan_client, dataset_id) == ["a.png", "b.png"]
    images = lan_client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]
    assert images[0]["caption"] == "tok, a red square"  # captions in the ZIP come along
    assert job["bytes_done"] == len(FILES["/set.zip"][2])  # the page showed the download's progress

    assert _import(lan_client, dataset_id, f"{web}/photo")["status"] == "completed"
    assert _import(lan_client, dataset_id, f"{web}/wrong.png")["status"] == "completed"  # a JPEG, named so
    assert _names(lan_client, dataset_id) == ["a.png", "b.png", "cat photo.png", "wrong.jpg"]
    job = _import(lan_client, dataset_id, f"{web}/rows")  # a Parquet file, known by its first bytes
    assert job["status"] == "completed" and job["result"]["source"]["file"] == "rows.parquet", job
    assert "row.png" in _names(lan_client, dataset_id)
    redirected = _dataset(lan_client)
    assert _import(lan_client, redirected, f"{web}/r1")["status"] == "completed"  # two redirects to the ZIP
    assert _names(lan_client, redirected) == ["a.png", "b.png"]


@pytest.mark.parametrize("path, words", [
    ("/share", "The link gave text/html, not a ZIP, a Parquet file, an image or a video: use a direct download link"),
    ("/missing.zip", "answered 404 Not Found: check that the link is right and public"),
    ("/big.zip", "over the limit of 1 MB (MAX_UPLOAD_MB)"),
    ("/loop", "redirects more than 5 times"),
    ("/cut.zip", "The download of cut.zip stopped at 100 KB of 400 KB: 127.0.0.1 closed the connection. Try again."),
])
def test_what_cannot_be_imported_says_why_and_adds_nothing(lan_client, web, path, words):
    dataset_id = _dataset(lan_client)
    job = _import(lan_client, dataset_id, web + path)
    assert job["status"] == "failed" and words in job["error"], job
    assert _names(lan_client, dataset_id) == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:11435/health", "http://169.254.169.254/latest/meta-data/",
                                 "http://10.1.2.3/set.zip", "http://[::1]/x.zip", "http://localhost:3000/"])
def test_private_and_local_addresses_are_refused_by_default(client, url):
    dataset_id = _dataset(client)
    response = client.post(f"/api/datasets/{dataset_id}/import-url", json={"url": url})
    assert response.status_code == 422 and "only fetches public links" in response.get_json()["error"]
    assert "ALLOW_PRIVATE_URLS=1" in response.get_json()["error"]


class _Job:
    def check_stop(self):
        return None

    def update(self, **values):
        return None


def test_every_redirect_hop_is_checked_before_it_is_fetched(web, monkeypatch, tmp_path):
    def checked(url, allow_private):
        if url.endswith("/secret"):
            raise link_fetch.BlockedAddress("internal", "10.0.0.1")
        return "127.0.0.1"

    monkeypatch.setattr(link_fetch, "checked_address", checked)
    Handler.seen.clear()
    with pytest.raises(url_import.JobError, match="internal"):
        url_import.download(_Job(), f"{web}/to-secret", tmp_path, 2**20, allow_private=False)
    assert Handler.seen == ["/to-secret"]  # the redirect's target was never asked for


def test_the_connection_goes_to_the_address_that_was_checked(web, monkeypatch, tmp_path):
    """A name that resolves to a public address at the check must not reach another one at the connection
    (DNS rebinding): the download connects to the checked address itself, never asking DNS again."""
    port = urlsplit(web).port
    looked_up = []
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        looked_up.append(host)
        if host == "files.example":  # this name is nowhere in DNS: only the check may ask for it
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    name, path = url_import.download(_Job(), f"http://files.example:{port}/photo", tmp_path, 2**20,
                                     allow_private=True)
    assert name == "cat photo.png" and path.read_bytes() == FILES["/photo"][2]
    assert looked_up == ["files.example", "127.0.0.1"]  # the name once, at the check; then the address itself


@pytest.mark.parametrize("body, words", [
    ({}, "'url' must be a link"),
    ({"url": 7}, "'url' must be a link"),
    ({"url": "ftp://example.com/set.zip"}, "http:// or https://"),
    ({"url": "set.zip"}, "http:// or https://"),
    ({"url": "https://example.com/" + "a" * 5000}, "http:// or https://"),
])
def test_a_malformed_link_is_refused(client, body, words):
    dataset_id = _dataset(client)
    response = client.post(f"/api/datasets/{dataset_id}/import-url", json=body)
    assert response.status_code == 422 and words in response.get_json()["error"]


def test_share_pages_become_direct_downloads():
    assert url_import.direct_link("https://huggingface.co/datasets/me/cats/blob/main/cats.zip") == \
        "https://huggingface.co/datasets/me/cats/resolve/main/cats.zip"
    assert url_import.direct_link("https://www.dropbox.com/scl/fi/abc/cats.zip?rlkey=x&dl=0") == \
        "https://www.dropbox.com/scl/fi/abc/cats.zip?rlkey=x&dl=1"
    assert url_import.direct_link("https://drive.google.com/file/d/1AbC-d_9/view?usp=sharing") == \
        "https://drive.usercontent.google.com/download?id=1AbC-d_9&export=download&confirm=t"
    plain = "https://example.com/files/cats.zip?sig=1"
    assert url_import.direct_link(plain) == plain


def test_public_addresses_pass_the_check():
    assert link_fetch.checked_address("http://1.1.1.1/x.zip", allow_private=False) == "1.1.1.1"  # no DNS needed
    assert link_fetch.checked_address("http://127.0.0.1/x.zip", allow_private=True) == "127.0.0.1"
    with pytest.raises(link_fetch.BlockedAddress):
        link_fetch.checked_address("http://192.168.1.20/x.zip", allow_private=False)


def _certificate(tmp_path, host: str):
    """A self-signed certificate for `host` (cert file, key file)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_https_on_the_checked_address_still_verifies_the_host_name(monkeypatch, tmp_path):
    import ssl

    cert_file, key_file = _certificate(tmp_path, "files.example")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert_file, key_file)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        real = socket.getaddrinfo

        def resolve(host, *args, **kwargs):
            if host in {"files.example", "other.example"}:
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0))]
            return real(host, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", resolve)
        monkeypatch.setattr(link_fetch, "_tls", lambda: ssl.create_default_context(cafile=str(cert_file)))
        port = server.server_address[1]
        name, path = url_import.download(_Job(), f"https://files.example:{port}/photo", tmp_path / "ok", 2**20,
                                         allow_private=True)
        assert name == "cat photo.png" and path.read_bytes() == FILES["/photo"][2]
        # the same address under a name the certificate does not carry: refused, as any client refuses it
        with pytest.raises(url_import.JobError, match="could not be reached"):
            url_import.download(_Job(), f"https://other.example:{port}/photo", tmp_path / "no", 2**20,
                                allow_private=True)
    finally:
        server.shutdown()


def test_a_video_a_heic_and_a_tiff_are_told_by_their_bytes(lan_client, web):
    dataset_id = _dataset(lan_client)
    for path in ("/clip", "/IMG_0007.HEIC", "/scan"):
        job = _import(lan_client, dataset_id, f"{web}{path}")
        assert job["status"] == "completed", job
    assert sorted(_names(lan_client, dataset_id)) == ["IMG_0007.heic", "clip-00m00.7s.jpg", "clip-00m02.7s.jpg",
                                                      "scan.tiff"]
    for head, ext in [(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", ".heic"), (b"\x00\x00\x00\x1cftypavif", ".avif"),
                      (b"\x00\x00\x00\x14ftypqt  ", ".mov"), (b"\x00\x00\x00\x20ftypisom", ".mp4"),
                      (b"\x1aE\xdf\xa3\x9fB\x86\x81", ".webm"), (b"RIFF\x00\x00\x00\x00AVI LIST", ".avi"),
                      (b"BM6\x00\x00\x00", ".bmp"), (b"<!doctype html>", None)]:
        assert url_import.kind_of(head) == ext, head
