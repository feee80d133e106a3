"""Publish a serverless job's LoRA to Hugging Face as well as to the bucket:
`"hub": {"repo": "name" or "owner/name", "private"?: true}` in the job input, with the endpoint's HF_TOKEN
(write access). The same commit as the pod's Publish to Hugging Face: the LoRA, a model card, the proof grid,
the ComfyUI workflow and the last previews.

The input is checked before any download (a bad name or a missing token fails in seconds, not after the
training); a refusal after the training does not fail the job, whose LoRA is in the bucket by then: the output
says why under "hub".
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from types import SimpleNamespace

from studio.hub_write import check_repo, write_error
from studio.settings import Settings
from studio.web import ApiError

log = logging.getLogger(__name__)


class HubInputError(ValueError):
    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.message, self.details = message, [{"field": field, "message": message}]


def parse_hub(spec, settings: Settings) -> dict | None:
    """{"repo", "private"} from the input's `hub` (None when there is none); HubInputError otherwise."""
    if spec is None:
        return None
    if not isinstance(spec, dict) or set(spec) - {"repo", "private"}:
        raise HubInputError("`hub` must be {\"repo\": \"name\" or \"owner/name\", \"private\": true}.", "hub")
    try:
        repo = check_repo(spec.get("repo"))
    except ApiError as exc:
        raise HubInputError(exc.message, "hub.repo") from None
    private = spec.get("private", True)
    if not isinstance(private, bool):
        raise HubInputError("`hub.private` must be true or false.", "hub.private")
    if not settings.hf_token:
        raise HubInputError("Set HF_TOKEN (a Hugging Face token with write access) in the endpoint's environment "
                            "to publish to Hugging Face.", "hub")
    check_token(settings)
    return {"repo": repo, "private": private}


def check_token(settings: Settings) -> None:
    """HF_TOKEN asked of the hub before any download: a token it refuses, or one that may only read, fails the job
    in seconds rather than its publication after the training. A hub that cannot be asked now is not a refusal."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        answer = HfApi(endpoint=settings.hf_endpoint, token=settings.hf_token).whoami()
    except HfHubHTTPError as exc:
        if exc.response is not None and exc.response.status_code in (401, 403):
            raise HubInputError("Hugging Face refused HF_TOKEN: set a valid token with write access in the "
                                "endpoint's environment.", "hub") from None
        log.warning("could not check HF_TOKEN (HTTP %s)", getattr(exc.response, "status_code", None))
        return
    except Exception as exc:  # the hub unreachable now: the publication after the training says so if it still is
        log.warning("could not check HF_TOKEN (%s)", type(exc).__name__)
        return
    token = ((answer.get("auth") or {}).get("accessToken") or {}) if isinstance(answer, dict) else {}
    if token.get("role") == "read":
        raise HubInputError("HF_TOKEN may only read: publishing needs a token of the 'write' role (or a "
                            "fine-grained one that may write to the repo's namespace).", "hub")


def publish_lora(spec: dict, settings: Settings, config, name: str, result: dict, job_dir: Path) -> dict:
    """{"repo", "url", "commit", "private"[, "visibility"]} once published, or {"error": sentence}."""
    from trainer.hub_publish import publish

    job = SimpleNamespace(config=dataclasses.asdict(config), id=name, step=int(result["steps"]),
                          lora_path=str(result["lora_path"]))
    try:
        done = publish(settings, spec["repo"], spec["private"], job, job_dir)
    except ApiError as exc:
        return {"error": exc.message}
    except Exception as exc:  # the LoRA is in the bucket: a refusal is reported, not raised
        log.warning("publishing %s to %s failed", name, spec["repo"], exc_info=True)
        return {"error": write_error(exc, spec["repo"])}
    # the repo's visibility as it is now: one that existed already may have kept its own (with a note why)
    return {"repo": done["repo"], "url": done["url"], "commit": done["commit"], "private": done["private"],
            **({"visibility": done["visibility"]} if done["visibility"] else {})}
