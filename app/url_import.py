"""Import from a link: the pod downloads a ZIP, an image or a video itself (datacentre bandwidth, no upload from a home
connection through the proxy), then the same import job as an upload checks and places every image.

    POST /api/datasets/<id>/import-url   {"url": "https://...", "limit": 200}   -> the import job (202);
                                                                                  poll .../imports/<job>

`limit` (optional) takes at most that many images, the first ones: of a Hugging Face dataset only what they need
is downloaded; of a ZIP or a Parquet file only they are unpacked (the file itself downloads whole).

Share pages of common hosts become their direct download (Hugging Face `blob` -> `resolve`, Dropbox `dl=0` ->
`dl=1`, a Google Drive file page -> its download). The studio fetches only public addresses (see link_fetch:
every redirect hop checked, the connection pinned to the checked address), unless ALLOW_PRIVATE_URLS=1 (a NAS on
your own network). A Hugging Face dataset link (the repo, a folder, a file) goes through the hub (hub_import).
"""

from __future__ import annotations

import re
import secrets
import shutil
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Blueprint, jsonify

from app import context, hub_import, import_limit, link_fetch
from app.frame_choice import check_frames, in_config, with_frames
from app.importer import Source, run_import
from studio.jobs import Job, JobError
from studio.web import ApiError, json_body
from studio.workspace import confined

bp = Blueprint("url_import", __name__)
MAX_URL = 4096
SIGNATURES = [(b"PK\x03\x04", ".zip"), (b"PAR1", ".parquet"), (b"\xff\xd8\xff", ".jpg"),
              (b"\x89PNG\r\n\x1a\n", ".png"), (b"II*\x00", ".tiff"), (b"MM\x00*", ".tiff"), (b"BM", ".bmp"),
              (b"\x1aE\xdf\xa3", ".webm")]  # the last: Matroska (WebM, MKV)
RIFF_KINDS = {b"WEBP": ".webp", b"AVI ": ".avi"}
# ISO media files by their major brand (bytes 8-12): HEIF photos, AVIF, QuickTime; any other brand is an MP4
FTYP_BRANDS = {b"heic": ".heic", b"heix": ".heic", b"mif1": ".heic", b"msf1": ".heic", b"avif": ".avif",
               b"avis": ".avif", b"qt  ": ".mov"}
ALIKE = [{".jpg", ".jpeg"}, {".tif", ".tiff"}, {".heic", ".heif"}, {".webm", ".mkv"}, {".mp4", ".m4v"}]


def check_url(url) -> str:
    """The link as given, if it can be fetched at all (http or https, a host); ApiError with a sentence if not."""
    if not isinstance(url, str) or not url.strip():
        raise ApiError("'url' must be a link to a ZIP or an image (https://...).", 422)
    url = url.strip()
    if len(url) > MAX_URL or not link_fetch.is_web_address(url):
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


def kind_of(head: bytes) -> str | None:
    """The extension of a ZIP, a Parquet file, an image or a video from a file's first 16 bytes, else None (a
    web page, something else)."""
    for signature, ext in SIGNATURES:
        if head.startswith(signature):
            return ext
    if head[:4] == b"RIFF":
        return RIFF_KINDS.get(head[8:12])
    if head[4:8] == b"ftyp":
        return FTYP_BRANDS.get(head[8:12], ".mp4")
    return None


def download(job, url: str, folder: Path, max_bytes: int, allow_private: bool) -> tuple[str, Path]:
    """Streams the link into `folder`; returns (the file's name, its path). JobError says what went wrong."""
    target = confined(folder, "download")
    fetched = link_fetch.fetch_to(job, url, target, max_bytes, allow_private)
    name, head, kind = fetched.name, fetched.head, fetched.kind
    ext = kind_of(head)
    if ext is None:
        raise JobError(f"The link gave {kind}, not a ZIP, a Parquet file, an image or a video: use a direct download "
                       "link (a share page shows the file, it is not the file).")
    stem, own = name.rsplit(".", 1) if "." in name else (name, "")
    own = f".{own.lower()}"
    if own != ext and not any({own, ext} <= alike for alike in ALIKE):
        name = f"{stem}{ext}"
    return name, target


@bp.post("/api/datasets/<dataset_id>/import-url")
def import_url(dataset_id: str):
    body = json_body()
    limit = import_limit.check_limit(body.get("limit"))
    return jsonify(start_url_import(context.dataset(dataset_id), body.get("url"), limit=limit,
                                    spread=import_limit.check_spread(body, limit),
                                    frames=check_frames(body)).public()), 202


def start_url_import(dataset, url_given, parent_id: str | None = None, skip_known: bool = False,
                     limit: int | None = None, frames: dict | None = None, spread: bool = False) -> Job:
    """The import job for a link (ApiError, before any job, for a malformed link or a refused address). A Hugging
    Face dataset link (the repo, a folder, a file) imports through the hub with the pod's HF_TOKEN. `limit` takes
    the first images only (with `spread`, that many spread over the whole source); `frames`: the frames to take
    from videos (app.frame_choice)."""
    given = check_url(url_given)
    settings = with_frames(context.settings(), frames)
    work_dir = confined(context.workspace().uploads, f"url-{secrets.token_hex(8)}")
    dataset_link = hub_import.hub_link(given)
    if dataset_link is not None:
        def sources(job) -> list[Source]:
            return hub_import.download(job, dataset_link, settings, work_dir / "download", limit, spread)

        def described(found: list[Source]) -> dict:
            return {"url": given, "dataset": dataset_link.repo,  # the files downloaded (a limit leaves some)
                    "files": sum(1 for source in found if source.path is not None),
                    **({"split": dataset_link.split} if dataset_link.split else {})}
    else:
        url = direct_link(given)
        try:
            link_fetch.checked_address(url, settings.allow_private_urls)  # a refused address answers now
        except (link_fetch.BlockedAddress, JobError) as exc:
            raise ApiError(str(exc), 422) from None
        source = Source("link")

        def fetch(job) -> Path:
            job.update(phase="downloading", message=f"Connecting to {urlsplit(url).hostname}")
            source.name, path = download(job, url, work_dir / "download", settings.max_upload_mb * 2**20,
                                         settings.allow_private_urls)
            return path

        source.prepare = fetch

        def sources(job) -> list[Source]:
            return [source]

        def described(found: list[Source]) -> dict:
            return {"url": given, "file": source.name}

    def work(job) -> dict:
        try:
            found = sources(job)
            result = run_import(job, dataset, found, settings, work_dir / "import", skip_known=skip_known,
                                limit=limit, spread=spread)
            result["source"] = described(found)
            return result
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)

    return context.executor().submit("import", dataset.id, work, parent_id=parent_id,
                                     config={"source": "url", "url": given, "limit": limit,  # for a resume
                                             "spread": spread, **in_config(frames)})
