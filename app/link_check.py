"""What a link would import, before importing it: the dialog shows it under the link as it is typed.

    POST /api/link-check   {"url": "https://huggingface.co/datasets/..."}   -> 200 {"kind": "hub", ...}, or 422 with
                                                                              the sentence the import would fail with

A Hugging Face dataset link is listed on the hub (with the pod's HF_TOKEN, at the revision's commit): how many
images, captions, ZIPs and Parquet files it holds, how many bytes, whether that is over MAX_UPLOAD_MB and how many
of its first images would fit. Any other link answers {"kind": "link"} (what it holds is known once downloaded), or
422 when its host does not resolve or is a private or local address the import would refuse.
A listing stops at LISTING_CAP files, so a check of a huge dataset answers within the proxy's time.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from app import context, hub_import, imaging, import_limit, link_fetch
from app.caption_files import is_metadata_name
from app.url_import import check_url
from app.video_frames import is_video_name
from studio.jobs import JobError
from studio.web import ApiError, json_body

bp = Blueprint("link_check", __name__)
LISTING_CAP = 50_000


@bp.post("/api/link-check")
def link_check():
    url = check_url(json_body().get("url"))
    link = hub_import.hub_link(url)
    if link is None:
        try:  # said under the link as it is typed, not once the import has started and failed
            link_fetch.checked_address(url, context.settings().allow_private_urls)
        except (JobError, link_fetch.BlockedAddress) as exc:
            raise ApiError(str(exc), 422) from None
        return jsonify({"kind": "link"})
    return jsonify(describe(link))


def describe(link: hub_import.HubLink) -> dict:
    """What the dataset link would import; ApiError with the import's own sentence when it could not."""
    from huggingface_hub import HfApi

    settings = context.settings()
    api = HfApi(endpoint=settings.hf_endpoint, token=settings.hf_token or False)
    try:
        commit = api.dataset_info(link.repo, revision=link.revision).sha or link.revision
        files, partial = hub_import.listed(api, link, commit, LISTING_CAP)
    except JobError as exc:
        raise ApiError(str(exc), 422) from None
    except Exception as exc:  # every hub failure is one sentence
        raise ApiError(str(hub_import.job_error(exc, link)), 422) from None
    paths = [entry.path.lower() for entry in files]
    total = sum(hub_import.size(entry) for entry in files)
    max_bytes = settings.max_upload_mb * 2**20
    return {"kind": "hub", "dataset": link.repo, "label": link.label, "revision": link.revision, "commit": commit,
            "split": link.split or None,
            "images": sum(1 for path in paths if imaging.is_image_name(path)),
            "captions": sum(1 for path in paths if path.endswith(".txt") or is_metadata_name(path)),
            "zips": sum(1 for path in paths if path.endswith(".zip")),
            "parquet": sum(1 for path in paths if path.endswith(".parquet")),
            "videos": sum(1 for path in paths if is_video_name(path)),
            "bytes": total, "max_bytes": max_bytes, "too_large": total > max_bytes, "partial": partial,
            "fits_images": _fitting(files, max_bytes) if total > max_bytes else None}


def _fitting(files: list, max_bytes: int) -> int | None:
    """How many of the first images (with their captions) fit in `max_bytes`; None when the images are inside
    Parquet files or ZIPs (how many each holds is known once it is read)."""
    images = [entry for entry in files if imaging.is_image_name(entry.path)]
    if not images:
        return None
    low, high = 0, len(images)
    while low < high:  # the most images whose download (import_limit.split) fits
        middle = (low + high + 1) // 2
        first, _ = import_limit.split(files, middle, lambda entry: entry.path)
        if sum(hub_import.size(entry) for entry in first) <= max_bytes:
            low = middle
        else:
            high = middle - 1
    return low
