"""Writing to Hugging Face with the pod's HF_TOKEN (a LoRA from the trainer, a dataset from the dataset manager):
repo names as the hub allows them, a bare name under the token's account, refusals as one sentence."""

from __future__ import annotations

import re

from studio.hub_files import hub_error
from studio.web import ApiError

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?$")
NO_TOKEN = "Set HF_TOKEN (a Hugging Face token with write access) in the pod's environment and restart it to publish."


def check_repo(repo, kind: str = "model", example: str = "my-lora") -> str:
    """`name` or `owner/name` as the hub allows them; ApiError with a sentence otherwise."""
    if not isinstance(repo, str) or not repo.strip():
        raise ApiError(f"'repo' must name the {kind} repo: {example}, or you/{example}.", 422)
    parts = repo.strip().split("/")
    if len(parts) > 2 or not all(_NAME.match(part) and "--" not in part and ".." not in part for part in parts):
        raise ApiError(f"{repo.strip()!r} is not a valid repo name: letters, digits, '-', '_' and '.', up to 96, "
                       "as name or owner/name.", 422)
    return "/".join(parts)


def full_name(api, repo: str) -> str:
    """`owner/name`: a bare name goes under the account the token belongs to."""
    return repo if "/" in repo else f"{api.whoami()['name']}/{repo}"


class VisibilityRefused(Exception):
    """A public repo asked to be private could not be made private: nothing is uploaded to it."""


def settle_visibility(api, repo: str, repo_type: str, private: bool) -> tuple[bool, str]:
    """(whether `repo` is private now, a note for the user or ""). `create_repo(exist_ok=True)` leaves a repo that
    exists already as it is, so a public one asked to be private is made private here, before anything is
    uploaded to it. A private one asked to be public stays private: other files in it may not be meant for
    everyone, so that is left to its owner, and the note says so."""
    from huggingface_hub.errors import HfHubHTTPError

    now = bool(api.repo_info(repo, repo_type=repo_type).private)
    if private and not now:
        try:
            api.update_repo_settings(repo, private=True, repo_type=repo_type)
        except HfHubHTTPError as exc:
            if exc.response is None or exc.response.status_code not in (401, 403):
                raise
            raise VisibilityRefused(f"{repo} is public, and Hugging Face refused to make it private with HF_TOKEN: "
                                    "nothing was uploaded. Make it private on Hugging Face, or publish it "
                                    "with Private unticked.") from None
        return True, f"{repo} was public: it was made private before the upload"
    if not private and now:
        return True, f"{repo} stays private, as it was: make it public in its settings on Hugging Face"
    return now, ""


def write_error(exc: Exception, repo: str) -> str:
    """Why the hub refused to create or write `repo`, in one sentence."""
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, VisibilityRefused):
        return str(exc)
    response = getattr(exc, "response", None) if isinstance(exc, HfHubHTTPError) else None
    if response is not None and response.status_code == 401:  # a token the hub does not know: not one that only reads
        return ("Hugging Face did not accept HF_TOKEN: it may have expired or been revoked. HF_TOKEN needs write "
                "access: make a token of the 'write' role at huggingface.co/settings/tokens, set HF_TOKEN to it and "
                "restart the pod.")
    if response is not None and response.status_code == 403:
        return (f"Hugging Face refused to write {repo}: HF_TOKEN needs write access (a token of the 'write' role, "
                "or a fine-grained one that may write to that namespace).")
    return str(hub_error(exc, repo, "main"))
