"""Import from a link: the pod downloads a ZIP or an image itself (datacentre bandwidth, no upload from a home
connection through the proxy), then the same import job as an upload checks and places every image.

    POST /api/datasets/<id>/import-url   {"url": "https://..."}   -> the import job (202); poll .../imports/<job>

Share pages of common hosts become their direct download (Hugging Face `blob` -> `resolve`, Dropbox `dl=0` ->
`dl=1`, a Google Drive file page -> its download). The studio fetches only public addresses: every hop of a
redirect is resolved and refused when it points at a private, loopback or link-local address (the pod's own
services, a cloud's metadata service), unless ALLOW_PRIVATE_URLS=1 (a NAS on your own network).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import shutil
import socket
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urljoin, urlsplit, urlunsplit

import requests
from flask import Blueprint, jsonify

from app import context
from app.importer import Source, run_import
from app.store import clean_filename
from studio.jobs import Job, JobError
from studio.web import ApiError, json_body
from studio.workspace import confined

bp = Blueprint("url_import", __name__)
MAX_URL = 4096
MAX_REDIRECTS = 5
TIMEOUT = (15, 60)  # connect, and between two blocks of the body
SIGNATURES = [(b"PK\x03\x04", ".zip"), (b"\xff\xd8\xff", ".jpg"), (b"\x89PNG\r\n\x1a\n", ".png")]


class BlockedAddress(ValueError):
    """The link points at an address the studio does not fetch from."""


def check_url(url) -> str:
    """The link as given, if it can be fetched at all (http or https, a host); ApiError with a sentence if not."""
    if not isinstance(url, str) or not url.strip():
        raise ApiError("'url' must be a link to a ZIP or an image (https://...).", 422)
    url = url.strip()
    parts = urlsplit(url)
    if len(url) > MAX_URL or parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ApiError("Give an http:// or https:// link to a ZIP or an image.", 422)
    return url


def direct_link(url: str) -> str:
    """The direct download behind a share page of a common host; other links as they are."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host in {"huggingface.co", "hf.co"} and "/blob/" in parts.path:
        return urlunsplit(parts._replace(path=parts.path.replace("/blob/", "/resolve/", 1)))
    if host.endswith("dropbox.com"):
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in {"dl", "raw"}]
        return urlunsplit(parts._replace(query=urlencode([*query, ("dl", "1")])))
    drive = re.match(r"^/file/d/([\w-]+)", parts.path)
    if host == "drive.google.com" and drive:
        return f"https://drive.usercontent.google.com/download?id={drive.group(1)}&export=download&confirm=t"
    return url


def guard(url: str, allow_private: bool) -> None:
    """Raises BlockedAddress unless every address the host resolves to is public (or private ones are allowed)."""
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise JobError(f"{host} could not be found (DNS): check the link.") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if not allow_private and not address.is_global:
            raise BlockedAddress(f"{host} is a private or local address ({address}): the studio only fetches "
                                 "public links (set ALLOW_PRIVATE_URLS=1 to allow your own network).")


def _open(url: str, allow_private: bool) -> requests.Response:
    """The response of the link's last redirect hop, every hop checked by `guard` before it is asked."""
    for _ in range(MAX_REDIRECTS + 1):
        try:
            guard(url, allow_private)
        except BlockedAddress as exc:
            raise JobError(str(exc)) from None
        response = requests.get(url, stream=True, timeout=TIMEOUT, allow_redirects=False,
                                headers={"User-Agent": "z-image-studio"})
        if response.is_redirect and response.headers.get("Location"):
            response.close()
            url = urljoin(url, response.headers["Location"])
            if urlsplit(url).scheme not in {"http", "https"}:
                raise JobError("The link redirects to something that is not a web address.")
            continue
        return response
    raise JobError(f"The link redirects more than {MAX_REDIRECTS} times.")


def file_name(response: requests.Response, url: str) -> str:
    """The name the server gives (Content-Disposition), else the link's last path part; made safe."""
    disposition = response.headers.get("Content-Disposition") or ""
    match = re.search(r"filename\*=(?:UTF-8'')?([^;]+)", disposition, re.IGNORECASE) or \
        re.search(r'filename="?([^";]+)"?', disposition, re.IGNORECASE)
    name = unquote(match.group(1).strip()) if match else unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    return clean_filename(name or "download")


def kind_of(head: bytes) -> str | None:
    """".zip", ".jpg", ".png" or ".webp" from a file's first bytes, else None (a web page, something else)."""
    for signature, ext in SIGNATURES:
        if head.startswith(signature):
            return ext
    return ".webp" if head[:4] == b"RIFF" and head[8:12] == b"WEBP" else None


def download(job, url: str, folder: Path, max_bytes: int, allow_private: bool) -> tuple[str, Path]:
    """Streams the link into `folder`; returns (the file's name, its path). JobError says what went wrong."""
    host = urlsplit(url).hostname
    try:
        with _open(url, allow_private) as response:
            if response.status_code != 200:
                raise JobError(f"{host} answered {response.status_code} {response.reason or ''}".rstrip()
                               + ": check that the link is right and public.")
            total = int(response.headers.get("Content-Length") or 0)
            if total > max_bytes:
                raise JobError(f"The file is {total / 2**20:,.0f} MB, over the limit of {max_bytes / 2**20:,.0f} MB "
                               "(MAX_UPLOAD_MB).")
            name = file_name(response, response.url or url)
            folder.mkdir(parents=True, exist_ok=True)
            target = confined(folder, "download")
            done, head = 0, b""
            with open(target, "wb") as sink:
                for block in response.iter_content(1 << 20):
                    job.check_stop()
                    done += len(block)
                    if done > max_bytes:
                        raise JobError(f"The file is over the limit of {max_bytes / 2**20:,.0f} MB (MAX_UPLOAD_MB).")
                    if len(head) < 16:
                        head += block[:16]
                    sink.write(block)
                    job.update(phase="downloading", bytes_done=done, bytes_total=total or None,
                               message=f"Downloading {name}")
    except requests.RequestException as exc:
        raise JobError(f"{host} could not be reached or stopped answering ({type(exc).__name__}): try again, "
                       "or check the link.") from None
    ext = kind_of(head)
    if ext is None:
        kind = (response.headers.get("Content-Type") or "unknown").split(";")[0]
        raise JobError(f"The link gave {kind}, not a ZIP or an image: use a direct download link (a share page "
                       "shows the file, it is not the file).")
    stem, own = name.rsplit(".", 1) if "." in name else (name, "")
    if f".{own.lower()}" != ext and not (ext == ".jpg" and own.lower() == "jpeg"):
        name = f"{stem}{ext}"
    return name, target


@bp.post("/api/datasets/<dataset_id>/import-url")
def import_url(dataset_id: str):
    return jsonify(start_url_import(context.dataset(dataset_id), json_body().get("url")).public()), 202


def start_url_import(dataset, url_given, parent_id: str | None = None, skip_known: bool = False) -> Job:
    """The import job for a link (ApiError, before any job, for a malformed link or a refused address)."""
    given = check_url(url_given)
    url = direct_link(given)
    settings = context.settings()
    try:
        guard(url, settings.allow_private_urls)  # a refused address answers now, not in a job
    except BlockedAddress as exc:
        raise ApiError(str(exc), 422) from None
    except JobError as exc:
        raise ApiError(str(exc), 422) from None
    work_dir = confined(context.workspace().uploads, f"url-{secrets.token_hex(8)}")
    source = Source("link")

    def fetch(job) -> Path:
        job.update(phase="downloading", message=f"Connecting to {urlsplit(url).hostname}")
        source.name, path = download(job, url, work_dir / "download", settings.max_upload_mb * 2**20,
                                     settings.allow_private_urls)
        return path

    source.prepare = fetch

    def work(job) -> dict:
        try:
            result = run_import(job, dataset, [source], settings, work_dir / "import", skip_known=skip_known)
            result["source"] = {"url": given, "file": source.name}
            return result
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)

    return context.executor().submit("import", dataset.id, work, parent_id=parent_id)

