"""Helpers for tests: free ports, real subprocess servers, waiting for HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_status(url: str, timeout: float = 2.0, headers: dict | None = None) -> int | None:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def wait_http(url: str, timeout: float = 60.0, ok=(200,), proc: subprocess.Popen | None = None,
              headers: dict | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before answering {url}")
        if http_status(url, headers=headers) in ok:
            return
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


class ServerProcess:
    """`python -m <module>` in a subprocess with its own environment; stopped on exit."""

    def __init__(self, module: str, env: dict, health_path: str = "/health", port_var: str = "PORT",
                 log_path: Path | None = None):
        self.module = module
        self.port = int(env.get(port_var) or free_port())
        self.env = {**os.environ, **env, port_var: str(self.port)}
        self.env.setdefault("PYTHONPATH", str(REPO))
        self.health_path = health_path
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> ServerProcess:
        out = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen([sys.executable, "-m", self.module], cwd=REPO, env=self.env,
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_http(self.url + self.health_path, timeout=timeout, proc=self.proc)
        return self

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def files_handler(files: dict, redirects: dict | None = None) -> type[BaseHTTPRequestHandler]:
    """A request handler that stands in for the web: GET `files[path]` = (content type, headers, body), a 302 for
    `redirects[path]`, 404 otherwise; the paths asked for are in `.seen`."""
    redirects = redirects or {}

    class Handler(BaseHTTPRequestHandler):
        seen: list[str] = []

        def do_GET(self):  # noqa: N802 - the standard library's name
            Handler.seen.append(self.path)
            if self.path in redirects:
                self.send_response(302)
                self.send_header("Location", redirects[self.path])
                self.end_headers()
                return
            if self.path not in files:
                self.send_error(404, "Not Found")
                return
            kind, headers, body = files[self.path]
            self.send_response(200)
            self.send_header("Content-Type", kind)
            # a Content-Length of its own: a download the server promises more of than it sends
            self.send_header("Content-Length", headers.get("Content-Length", str(len(body))))
            for key, value in headers.items():
                if key != "Content-Length":
                    self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            return None

    return Handler


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` on 127.0.0.1 in a thread; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@contextmanager
def serving_app(app) -> Iterator[str]:
    """A Flask app on a real HTTP server in a thread (headers decoded from bytes as a WSGI server does); yields its
    base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
