"""A local server that speaks enough of the hub's protocol (HF_ENDPOINT) for huggingface-hub 2.4: model info,
dataset and model trees, HEAD/GET /resolve with ranges, an optional CDN redirect, and faults to inject."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

COMMIT = "c0ffee" * 6 + "c0ff"


def _blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


class FakeHub:
    """Enough of the hub for huggingface-hub 2.4: model info with file metadata, HEAD/GET /resolve with ranges."""

    def __init__(self):
        self.repos: dict[str, dict[str, bytes]] = {}
        self.lfs: set[tuple[str, str]] = set()
        self.drop_once: dict[tuple[str, str], int] = {}  # (repo, file) -> byte offset to cut the connection at
        self.cut_every: dict[tuple[str, str], int] = {}  # (repo, file) -> bytes sent per response before a cut
        self.dead_from: dict[tuple[str, str], int] = {}  # (repo, file) -> a response from here on sends no byte
        self.corrupt: set[tuple[str, str]] = set()  # served bytes differ from the advertised hash
        self.slow: dict[tuple[str, str], float] = {}  # seconds to sleep per 64 KB chunk
        self.cdn = False  # LFS files redirect to another host (as the hub does to its CDN)
        self.gated: set[str] = set()  # repos that answer 403 GatedRepo (terms not accepted)
        self.private: set[str] = set()  # repos created private
        self.tokens: dict[str, str] = {}  # repo -> the token it opens to (401 without it), for reading private repos
        self.user = "me"  # whoami's answer for any token; None: every token is refused (401)
        self.refused_tokens: set[str] = set()  # tokens the hub does not know (invalid, expired): 401 on any read
        self.commits: list[dict] = []  # {"repo", "summary", "files"} per commit received
        self.settings_changes: list[dict] = []  # {"repo", "visibility"} per settings change received
        self.cards: list[dict] = []  # model card front matter, as validated (parsed YAML)
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub.serve(self, head=True)

            def do_GET(self):
                hub.serve(self, head=False)

            def do_POST(self):
                hub.receive(self)

            def do_PUT(self):
                hub.repo_settings(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, repo: str, files: dict[str, bytes], lfs: tuple[str, ...] = ()):
        """A model repo ("org/name") or a dataset repo ("datasets/org/name") with its files."""
        self.repos[repo] = files
        self.lfs.update((repo, name) for name in lfs)

    def file_requests(self, method: str = "GET") -> list[dict]:
        return [r for r in self.requests if r["method"] == method and "/resolve/" in r["path"]]

    def _send(self, handler, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if not head:
            handler.wfile.write(body)

    def serve(self, handler, head: bool):
        path = unquote(urlparse(handler.path).path)
        with self.lock:
            self.requests.append({"method": handler.command, "path": path, "range": handler.headers.get("Range"),
                                  "auth": handler.headers.get("Authorization")})
        if handler.headers.get("Authorization") in {f"Bearer {token}" for token in self.refused_tokens}:
            return self._send(handler, 401, b'{"error":"Invalid credentials in Authorization header"}',
                              {"Content-Type": "application/json"}, head)
        if path == "/api/whoami-v2":
            plain = {"Content-Type": "application/json"}
            if self.user is None or not handler.headers.get("Authorization"):
                return self._send(handler, 401, b'{"error":"Invalid credentials"}', plain)
            body = json.dumps({"name": self.user, "type": "user", "orgs": [], "auth": {"type": "access_token"}})
            return self._send(handler, 200, body.encode(), plain, head)
        tree = re.fullmatch(r"/api/(datasets|models)/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?", path)
        if tree:
            repo = f"datasets/{tree.group(2)}" if tree.group(1) == "datasets" else tree.group(2)
            return self._tree(handler, repo, tree.group(3), (tree.group(4) or "").strip("/"),
                              parse_qs(urlparse(handler.path).query).get("recursive", [""])[0].lower() == "true", head)
        info = re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)(?:/revision/(.+))?", path)
        if info:
            repo = info.group(2) if info.group(1) == "models" else f"datasets/{info.group(2)}"
            if repo not in self.repos:
                return self._send(handler, 404, b'{"error":"Repository not found"}',
                                  {"X-Error-Code": "RepoNotFound", "Content-Type": "application/json"}, head)
            siblings = []
            for name, data in self.repos[repo].items():
                sibling = {"rfilename": name, "size": len(data), "blobId": _blob_id(data)}
                if (repo, name) in self.lfs:
                    sibling["lfs"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
                siblings.append(sibling)
            if self._locked(handler, repo):
                return self._send(handler, 401, b'{"error":"Repository not found"}',
                                  {"X-Error-Code": "RepoNotFound", "Content-Type": "application/json"}, head)
            if repo in self.gated:
                return self._send(handler, 403, b'{"error":"Access to this repo is restricted"}',
                                  {"X-Error-Code": "GatedRepo", "Content-Type": "application/json"}, head)
            if (info.group(3) or "main") not in {"main", COMMIT}:
                return self._send(handler, 404, b'{"error":"Invalid rev id"}',
                                  {"X-Error-Code": "RevisionNotFound", "Content-Type": "application/json"}, head)
            body = json.dumps({"id": info.group(2), "modelId": info.group(2), "sha": COMMIT,
                               "private": repo in self.private,
                               "siblings": siblings}).encode()
            return self._send(handler, 200, body, {"Content-Type": "application/json"}, head)
        cdn = re.fullmatch(r"/cdn/((?:datasets/)?[^/]+/[^/]+)/(.+)", path)
        resolve = re.fullmatch(r"/((?:datasets/)?[^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if cdn:
            repo, name = cdn.group(1), cdn.group(2)
        elif not resolve or resolve.group(1) not in self.repos:
            return self._send(handler, 404, b"not found", {"X-Error-Code": "RepoNotFound"}, head)
        else:
            repo, name = resolve.group(1), resolve.group(3)
            if self._locked(handler, repo):
                return self._send(handler, 401, b"private", {"X-Error-Code": "RepoNotFound"}, head)
        data = self.repos[repo].get(name)
        if data is None:
            return self._send(handler, 404, b"no such file", {"X-Error-Code": "EntryNotFound",
                                                               "X-Repo-Commit": COMMIT}, head)
        key = (repo, name)
        etag = hashlib.sha256(data).hexdigest() if key in self.lfs else _blob_id(data)
        if self.cdn and resolve and key in self.lfs:
            location = f"http://localhost:{self.server.server_address[1]}/cdn/{repo}/{name}"
            return self._send(handler, 302, b"", {"Location": location, "X-Repo-Commit": COMMIT,
                                                  "X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data))},
                              head)
        served = data[:-1] + bytes([data[-1] ^ 0xFF]) if key in self.corrupt else data
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", handler.headers.get("Range") or "")
        if match and not head:
            start = int(match.group(1))
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = served[start:]
        handler.send_response(206 if start else 200)
        for k, v in headers.items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if head:
            return
        cut = self.drop_once.pop(key, None)
        if key in self.cut_every:
            cut = start + self.cut_every[key]
        if key in self.dead_from and start >= self.dead_from[key]:
            cut = start
        delay = self.slow.get(key, 0.0)
        for offset in range(0, len(body), 65536):
            if cut is not None and start + offset >= cut:
                handler.wfile.flush()
                handler.close_connection = True
                handler.connection.shutdown(2)  # the connection drops mid-file, as a flaky network does
                return
            handler.wfile.write(body[offset:offset + 65536])
            if delay:
                handler.wfile.flush()
                time.sleep(delay)

    def _locked(self, handler, repo: str) -> bool:
        token = self.tokens.get(repo)
        return token is not None and handler.headers.get("Authorization") != f"Bearer {token}"

    def receive(self, handler):
        """Uploads as huggingface-hub makes them: whoami, create a repo, preupload (every file "regular"), commit."""
        path = unquote(urlparse(handler.path).path)
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        auth = handler.headers.get("Authorization")
        with self.lock:
            self.requests.append({"method": "POST", "path": path, "range": None, "auth": auth})
        plain = {"Content-Type": "application/json"}
        if not auth or self.user is None:
            return self._send(handler, 401, b'{"error":"Invalid credentials in Authorization header"}', plain)
        if path == "/api/validate-yaml":  # the model card's front matter must be YAML the hub can read
            import yaml

            content = json.loads(body)["content"]
            try:
                meta = yaml.safe_load(content.split("---\n")[1]) if content.startswith("---\n") else {}
                assert isinstance(meta, dict), "the front matter is not a mapping"
            except (yaml.YAMLError, AssertionError, IndexError) as exc:
                return self._send(handler, 400, json.dumps({"errors": [{"message": str(exc)}]}).encode(), plain)
            self.cards.append(meta)
            return self._send(handler, 200, b'{"errors": [], "warnings": []}', plain)
        if path == "/api/repos/create":
            request = json.loads(body)
            kind = {"model": "", "dataset": "datasets/"}[request.get("type") or "model"]
            repo = f"{kind}{request.get('organization') or self.user}/{request['name']}"
            if repo in self.repos:
                return self._send(handler, 409, json.dumps({"error": "You already created this repo",
                                                            "url": f"{self.url}/{repo}"}).encode(), plain)
            self.repos[repo] = {}
            if request.get("visibility") == "private":
                self.private.add(repo)
            return self._send(handler, 200, json.dumps({"url": f"{self.url}/{repo}"}).encode(), plain)
        upload = re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)/(preupload|commit)/([^/]+)", path)
        repo = upload and (upload.group(2) if upload.group(1) == "models" else f"datasets/{upload.group(2)}")
        if not upload or repo not in self.repos:
            return self._send(handler, 404, b'{"error":"Repository not found"}',
                              {**plain, "X-Error-Code": "RepoNotFound"})
        if upload.group(3) == "preupload":
            files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                     for f in json.loads(body)["files"]]
            return self._send(handler, 200, json.dumps({"files": files}).encode(), plain)
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        added = {line["value"]["path"]: base64.b64decode(line["value"]["content"])
                 for line in lines if line["key"] == "file"}
        deleted = [line["value"]["path"] for line in lines if line["key"] == "deletedFile"]
        self.repos[repo].update(added)
        for name in deleted:
            self.repos[repo].pop(name, None)
        self.commits.append({"repo": repo, "summary": header.get("summary"), "files": sorted(added),
                             **({"deleted": sorted(deleted)} if deleted else {})})
        return self._send(handler, 200, json.dumps({"commitUrl": f"{self.url}/{repo}/commit/{COMMIT}",
                                                    "commitOid": COMMIT}).encode(), plain)

    def repo_settings(self, handler):
        """PUT /api/<type>s/<repo>/settings: a repo's visibility changed by its owner."""
        path = unquote(urlparse(handler.path).path)
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        auth = handler.headers.get("Authorization")
        with self.lock:
            self.requests.append({"method": "PUT", "path": path, "range": None, "auth": auth})
        plain = {"Content-Type": "application/json"}
        if not auth or self.user is None:
            return self._send(handler, 401, b'{"error":"Invalid credentials in Authorization header"}', plain)
        found = re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)/settings", path)
        repo = found and (found.group(2) if found.group(1) == "models" else f"datasets/{found.group(2)}")
        if not found or repo not in self.repos:
            return self._send(handler, 404, b'{"error":"Repository not found"}',
                              {**plain, "X-Error-Code": "RepoNotFound"})
        visibility = json.loads(body or b"{}").get("visibility")
        if visibility == "private":
            self.private.add(repo)
        elif visibility == "public":
            self.private.discard(repo)
        self.settings_changes.append({"repo": repo, "visibility": visibility})
        return self._send(handler, 200, b"{}", plain)

    def _tree(self, handler, repo: str, revision: str, folder: str, recursive: bool, head: bool):
        error = {"Content-Type": "application/json"}
        if repo not in self.repos:
            return self._send(handler, 404, b'{"error":"Repository not found"}',
                              {**error, "X-Error-Code": "RepoNotFound"}, head)
        if repo in self.gated:
            return self._send(handler, 403, b'{"error":"Access to this dataset is restricted"}',
                              {**error, "X-Error-Code": "GatedRepo"}, head)
        if revision not in {"main", COMMIT}:
            return self._send(handler, 404, b'{"error":"Invalid rev id"}',
                              {**error, "X-Error-Code": "RevisionNotFound"}, head)
        prefix = f"{folder}/" if folder else ""
        entries, folders = [], set()
        for name, data in self.repos[repo].items():
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix):]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/", 1)[0])
                continue
            entry = {"type": "file", "path": name, "size": len(data), "oid": _blob_id(data)}
            if (repo, name) in self.lfs:
                entry["lfs"] = {"size": len(data), "oid": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
            entries.append(entry)
        if folder and not entries and not folders:
            return self._send(handler, 404, b'{"error":"Entry not found"}', {**error, "X-Error-Code": "EntryNotFound"},
                              head)
        entries += [{"type": "directory", "path": name, "oid": _blob_id(name.encode())} for name in sorted(folders)]
        return self._send(handler, 200, json.dumps(entries).encode(), error, head)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
