"""HTTP API of the caption service: POST /caption, POST /unload, POST /load."""

from __future__ import annotations

import base64
import binascii

from flask import Blueprint, current_app, jsonify, request

from caption_service.captioning import CaptionRequest, caption, check_max_tokens
from caption_service.images import ImageRejected
from caption_service.model_manager import CaptionTimeout, ModelManager, ServiceBusy
from caption_service.prompts import PromptError
from studio.web import ApiError, json_body

bp = Blueprint("captions", __name__)

URL_PREFIXES = ("http://", "https://", "ftp://", "ftps://", "file:", "//")
URL_REFUSED = "Send image bytes (base64 or a multipart file); the service never fetches URLs."
HOW_TO_SEND = ("Send JSON with the image as base64 in 'image' (Content-Type: application/json), or a multipart form "
               "with the image file in a field named 'file'.")
# The dataset manager's own limits (its auto-caption prompt and a dataset's trigger word): longer text is a mistake,
# and a prompt past the model's context would fail inside llama.cpp.
MAX_PROMPT_CHARS = 2000
MAX_TRIGGER_CHARS = 60
MAX_STYLE_CHARS = 40


def models() -> ModelManager:
    return current_app.extensions["caption_models"]


def _image_from_text(value) -> bytes:
    """Base64 (optionally as a data: URI) to bytes; a URL is refused, never fetched."""
    if not isinstance(value, str):
        raise ApiError("The image field must be a base64 string.", 422)
    value = value.strip()
    if value.lower().startswith(URL_PREFIXES):
        raise ApiError(URL_REFUSED, 422)
    if value.lower().startswith("data:"):
        header, _, value = value.partition(",")
        if ";base64" not in header.lower():
            raise ApiError("A data: URI image must be base64-encoded.", 422)
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError("The image field is not valid base64.", 422) from None


def _text_field(fields, name: str, max_chars: int) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(f"{name} must be a string.", 422)
    if len(value) > max_chars:
        raise ApiError(f"{name} is {len(value):,} characters long; the limit is {max_chars:,}.", 422)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON) that no tokenizer or caption file can take
        raise ApiError(f"{name} is not valid Unicode text: it holds a lone surrogate character.", 422) from None
    return value


def _parse_request() -> CaptionRequest:
    if request.mimetype == "multipart/form-data":
        fields = request.form
        upload = request.files.get("file")
        if upload is None:
            upload = request.files.get("image")  # a file sent under the JSON field's name
        if upload is not None:
            data = upload.read()
        elif fields.get("image") is not None:
            data = _image_from_text(fields.get("image"))
        else:
            raise ApiError("Send the image as a multipart field named 'file'.", 422)
    elif not request.is_json:  # raw image bytes, a url-encoded form: say what is accepted, not only "JSON"
        sent = f"Content-Type {request.mimetype}" if request.mimetype else "no Content-Type"
        raise ApiError(f"A request with {sent} is not accepted. {HOW_TO_SEND}", 400)
    else:
        fields = json_body()
        if "image" not in fields:
            if any(key in fields for key in ("url", "image_url")):
                raise ApiError(URL_REFUSED, 422)
            raise ApiError("The request needs an image: base64 bytes in the 'image' field.", 422)
        data = _image_from_text(fields["image"])
    try:
        max_tokens = check_max_tokens(fields.get("max_tokens"))
    except ValueError as exc:
        raise ApiError(str(exc), 422) from None
    return CaptionRequest(image=data, style=_text_field(fields, "style", MAX_STYLE_CHARS) or "detailed",
                          prompt=_text_field(fields, "prompt", MAX_PROMPT_CHARS),
                          trigger_word=_text_field(fields, "trigger_word", MAX_TRIGGER_CHARS), max_tokens=max_tokens)


@bp.post("/caption")
def create_caption():
    caption_request = _parse_request()
    try:
        return jsonify(caption(models(), caption_request))
    except (PromptError, ImageRejected) as exc:
        raise ApiError(str(exc), 422) from None
    except ServiceBusy as exc:
        raise ApiError(exc.message, 503, headers={"Retry-After": str(exc.retry_after)}) from None
    except CaptionTimeout as exc:
        raise ApiError(str(exc), 504) from None


@bp.post("/unload")
def unload():
    if not models().unload():
        raise ApiError("A caption or a model load is still running; try again in a moment.", 503,
                       headers={"Retry-After": "5"})
    return jsonify({"status": "unloaded"})


@bp.post("/load")
def load():
    models().load_async()
    return jsonify(models().health().to_dict())
