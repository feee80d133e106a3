"""Civitai links for "Add a LoRA from a link": a model's page (`civitai.com/models/123/cat-style`, with or without
`?modelVersionId=456`) or a download link (`civitai.com/api/download/models/456`). Before anything downloads, the
pod asks Civitai's public API about that version: a LoRA for another base model (SDXL, Flux, ...) or something
that is not a LoRA is refused at once, by name; the version's file (the primary model file, not training data)
is what downloads, with the API key of CIVITAI_TOKEN when one is set (some downloads need a signed-in account);
and its trigger words go into the file's metadata, so `[trigger]` works when it is tried and trained further.

CIVITAI_URL names Civitai's address (a mirror; the tests' stand-in). Every request goes through the same checks
as every link the pod fetches (app.link_fetch: each redirect hop, private addresses refused).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from app import link_fetch
from studio.jobs import JobError

HOSTS = {"civitai.com", "www.civitai.com", "civitai.green"}
DOWNLOAD = re.compile(r"^/api/download/models/(\d+)")
PAGE = re.compile(r"^/models/(\d+)")
MAX_ANSWER = 4 << 20  # bytes of JSON read from the API
LORA_TYPES = {"lora", "locon", "dora", "lycoris"}  # Civitai's model types that can hold a LoRA


@dataclass(frozen=True)
class CivitaiLora:
    version_id: int
    title: str  # "Cat Style (v2)"
    base_model: str
    download: str  # the link that downloads the file
    trigger_words: list[str] = field(default_factory=list)
    page: str = ""


def _hosts(api_base: str) -> set[str]:
    return HOSTS | {(urlsplit(api_base).hostname or "").lower()}


def is_civitai(url: str, api_base: str) -> bool:
    return (urlsplit(url).hostname or "").lower() in _hosts(api_base)


def _answer(url: str, allow_private: bool, what: str) -> dict:
    status, answer = link_fetch.json_answer(url, allow_private, limit=MAX_ANSWER)
    if status != 200:
        raise JobError(f"Civitai answered {status} when asked about {what}: check the link (the model may have been "
                       "taken down or made private).")
    if answer is None:
        raise JobError(f"Civitai's answer about {what} could not be read; try again later.")
    return answer


def _zimage(base_model: str) -> bool:
    return "zimage" in re.sub(r"[^a-z0-9]", "", base_model.lower())


def _with_token(link: str, token: str | None, api_base: str) -> str:
    """The link with the API key, when it goes to Civitai itself (never to another host an answer names)."""
    if not token or not is_civitai(link, api_base):
        return link
    parts = urlsplit(link)
    query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if key != "token"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("token", token)])))


def _model_file(version: dict) -> str | None:
    """The version's primary model file's download link (a version may also hold training data, a config)."""
    files = [f for f in version.get("files") or [] if isinstance(f, dict) and f.get("downloadUrl")]
    models = [f for f in files if str(f.get("type") or "Model") == "Model"]
    chosen = next((f for f in models if f.get("primary")), models[0] if models else None)
    return str(chosen["downloadUrl"]) if chosen else None


def lookup(url: str, *, api_base: str, token: str | None, allow_private: bool) -> CivitaiLora | None:
    """What Civitai says about the LoRA of a Civitai link (None for a link of another host, or a Civitai link
    that names no model); JobError with a sentence for a model that is not a Z-Image LoRA."""
    if not is_civitai(url, api_base):
        return None
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    download, page = DOWNLOAD.match(parts.path), PAGE.match(parts.path)
    model_name, model_type = None, None
    if download or query.get("modelVersionId", "").isdigit():
        version_id = int(download[1] if download else query["modelVersionId"])
        version = _answer(f"{api_base}/api/v1/model-versions/{version_id}", allow_private, f"version {version_id}")
    elif page:
        model = _answer(f"{api_base}/api/v1/models/{page[1]}", allow_private, f"model {page[1]}")
        versions = [v for v in model.get("modelVersions") or [] if isinstance(v, dict) and v.get("id")]
        if not versions:
            raise JobError(f"Civitai lists no version of model {page[1]} to download.")
        version, model_name, model_type = versions[0], model.get("name"), model.get("type")
    else:
        return None
    if not isinstance(version.get("id"), int):
        raise JobError("Civitai's answer about this model names no version to download; try again later.")
    about = version.get("model") if isinstance(version.get("model"), dict) else {}
    model_name = str(model_name or about.get("name") or f"model version {version.get('id')}")
    title = f"{model_name} ({version['name']})" if version.get("name") else model_name
    model_type = str(model_type or about.get("type") or "LORA")
    if model_type.lower() not in LORA_TYPES:
        raise JobError(f"“{title}” is a {model_type} on Civitai, not a LoRA: the library holds LoRAs.")
    base_model = str(version.get("baseModel") or "")
    if not _zimage(base_model):
        raise JobError(f"“{title}” is a LoRA for {base_model or 'another model'} on Civitai, not for Z-Image: it "
                       "would not work here (or in ComfyUI with Z-Image). Look for its Z-Image version.")
    link = url if download else (_model_file(version) or version.get("downloadUrl")
                                 or f"{api_base}/api/download/models/{version['id']}")
    words = [str(word).strip().strip(",") for word in version.get("trainedWords") or [] if str(word).strip()]
    model_id = version.get("modelId") or (page[1] if page else None)
    return CivitaiLora(version["id"], title, base_model, _with_token(str(link), token, api_base), words,
                       f"{api_base}/models/{model_id}?modelVersionId={version['id']}" if model_id else "")
