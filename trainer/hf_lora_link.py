"""A Hugging Face model repo's page as a LoRA link (`huggingface.co/you/cat-lora`, or `…/tree/main/folder`): the
repo's files are listed through the hub's public API and its one .safetensors file is what downloads (the one at the
top when there are others in folders). A repo of several at one level is answered with their names, so the file's
own link can be pasted; a file's page or download link (`/blob/`, `/resolve/`) is a plain link already.

HF_ENDPOINT names the hub (a mirror; the tests' stand-in); HF_TOKEN opens private and gated repos and files (sent to
the hub's own hosts only). Through app.link_fetch like every link the pod fetches.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

from app import link_fetch
from studio.jobs import JobError

HOSTS = {"huggingface.co", "www.huggingface.co", "hf.co"}
REPO_PAGE = re.compile(r"^/([\w.-]+)/([\w.-]+)(?:/tree/([^/]+)(?:/(.*))?)?/?$")
NOT_MODELS = {"datasets", "spaces", "docs", "blog", "models", "api", "papers", "collections", "organizations"}
MAX_ANSWER = 8 << 20


def _hosts(endpoint: str | None) -> set[str]:
    return HOSTS | ({(urlsplit(endpoint).hostname or "").lower()} if endpoint else set())


def credentials(endpoint: str | None, token: str | None) -> link_fetch.Credentials | None:
    """The pod's HF_TOKEN for the hub's own hosts (private and gated repos open), never for another host."""
    return link_fetch.Credentials(frozenset(_hosts(endpoint)), f"Bearer {token}") if token else None


def is_hub(url: str, endpoint: str | None) -> bool:
    return (urlsplit(url).hostname or "").lower() in _hosts(endpoint)


def private_message(what: str, token: bool) -> str:
    if token:
        return (f"{what} on Hugging Face is private or gated, and the pod's HF_TOKEN does not open it: give the token "
                "read access to it (a gated repo: accept its terms on Hugging Face with that account).")
    return f"{what} on Hugging Face is private or gated: set HF_TOKEN to a token with read access to it."


def repo_page(url: str, endpoint: str | None) -> tuple[str, str, str] | None:
    """(repo, revision, folder) of a link to a model repo's page (or a folder of it); None for any other link."""
    hosts = _hosts(endpoint)
    parts = urlsplit(url)
    found = REPO_PAGE.match(parts.path)
    if (parts.hostname or "").lower() not in hosts or not found or found[1] in NOT_MODELS:
        return None
    return f"{found[1]}/{found[2]}", found[3] or "main", (found[4] or "").strip("/")


def _files(endpoint: str, repo: str, revision: str, allow_private: bool,
           auth: link_fetch.Credentials | None) -> list[str]:
    url = f"{endpoint}/api/models/{repo}/revision/{quote(revision, safe='')}"
    status, answer = link_fetch.json_answer(url, allow_private, auth, limit=MAX_ANSWER)
    if status in (401, 403):
        raise JobError(private_message(repo, auth is not None))
    if status != 200:
        raise JobError(f"Hugging Face answered {status} for the repo {repo}: check the link.")
    siblings = (answer or {}).get("siblings")
    if not isinstance(siblings, list):
        raise JobError(f"Hugging Face's answer about {repo} could not be read; try again later.")
    return [str(s.get("rfilename")) for s in siblings if isinstance(s, dict) and s.get("rfilename")]


def model_file_link(url: str, *, endpoint: str | None, allow_private: bool,
                    auth: link_fetch.Credentials | None = None) -> str | None:
    """The download link of the LoRA a model repo's page holds; None when the link is not a repo's page. JobError
    with a sentence when it holds none, or several at one level."""
    page = repo_page(url, endpoint)
    if page is None:
        return None
    repo, revision, folder = page
    base = (endpoint or "https://huggingface.co").rstrip("/")
    inside = [name for name in _files(base, repo, revision, allow_private, auth)
              if name.endswith(".safetensors") and (not folder or name.startswith(f"{folder}/"))]
    if not inside:
        raise JobError(f"{repo}{f'/{folder}' if folder else ''} on Hugging Face holds no .safetensors file.")
    depth = min(name.count("/") for name in inside)
    top = [name for name in inside if name.count("/") == depth]
    if len(top) > 1:
        shown = ", ".join(sorted(top)[:5]) + (f" and {len(top) - 5} more" if len(top) > 5 else "")
        raise JobError(f"{repo} holds several .safetensors files ({shown}): open the one you want on Hugging Face "
                       "and paste its link.")
    return f"{base}/{repo}/resolve/{quote(revision, safe='')}/{quote(top[0])}"
