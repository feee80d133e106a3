"""Fetching a link someone gave without letting it reach the pod's own side: every hop of a redirect is resolved
once, refused when any address is private, loopback or link-local (the pod's services, a cloud's metadata
service, a LAN) unless that is allowed, and the connection goes to the very address that was checked. A host
whose DNS answer changes between the check and the connection (rebinding) cannot slip past.

TLS still checks the certificate against the link's host name (SNI), as any client does.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urljoin, urlsplit, urlunsplit

from app.store import clean_filename
from studio.jobs import JobError
from studio.model_status import format_bytes

MAX_REDIRECTS = 5
CONNECT_TIMEOUT_S = 15
READ_TIMEOUT_S = 60  # between two blocks of the body
STOP_WATCH_S = 1.0  # how often a download whose link went quiet looks for a stop
REDIRECTS = {301, 302, 303, 307, 308}


# query parameters that carry a credential: a link is shown and kept without them (its download uses them)
SECRET_PARAMS = {"token", "api_key", "apikey", "access_token", "auth", "key", "sig", "signature", "x-amz-signature",
                 "x-amz-credential", "x-amz-security-token", "x-goog-signature", "x-goog-credential"}


def shown_link(url: str) -> str:
    """`url` as it may be shown and recorded: without its credential parameters (a Civitai `?token=`, a signed
    link's signature) or a user:password part."""
    parts = urlsplit(url)
    query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True)
             if key.lower() not in SECRET_PARAMS]
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))


class BlockedAddress(ValueError):
    """The link points at an address the studio does not fetch from."""

    def __init__(self, host: str, address: str):
        super().__init__(f"{host} is a private or local address ({address}): the studio only fetches public links "
                         "(set ALLOW_PRIVATE_URLS=1 to allow your own network).")
        self.host, self.address = host, address


def checked_address(url: str, allow_private: bool) -> str:
    """The address to connect to for `url`'s host; BlockedAddress when any of its addresses is not public
    (and private ones are not allowed), JobError when the name does not resolve."""
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise JobError(f"{host} could not be found (DNS): check the link.") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    for address in addresses:
        if not allow_private and not address.is_global:
            raise BlockedAddress(host, str(address))
    return str(addresses[0])


def pinned_connection(url: str, address: str, timeout_s: float = READ_TIMEOUT_S) -> http.client.HTTPConnection:
    """A connection for `url` (http or https, its host name checked by TLS) that goes to `address`, checked
    beforehand by `checked_address`."""
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    if secure:
        return _PinnedTLS(parts.hostname, port, address, _tls(), timeout_s)
    return _Pinned(parts.hostname, port, address, timeout_s)


def is_web_address(url: str) -> bool:
    """Whether `url` is an http(s) address with a host and a port that can be connected to (a port over 65535, a
    port that is no number, an unclosed "[" make urllib raise ValueError later, deep inside a download)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return parts.scheme in {"http", "https"} and bool(parts.hostname) and port != 0


def request_target(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


class _Pinned(http.client.HTTPConnection):
    """HTTP to a host name, connected to an address checked beforehand."""

    def __init__(self, host: str, port: int, address: str, timeout_s: float = READ_TIMEOUT_S):
        super().__init__(host, port, timeout=timeout_s)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), min(CONNECT_TIMEOUT_S, self.timeout))
        self.sock.settimeout(self.timeout)


class _PinnedTLS(_Pinned):
    default_port = 443

    def __init__(self, host: str, port: int, address: str, tls: ssl.SSLContext, timeout_s: float = READ_TIMEOUT_S):
        super().__init__(host, port, address, timeout_s)
        self.tls = tls

    def connect(self) -> None:
        super().connect()
        self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.host)


def _tls() -> ssl.SSLContext:
    try:
        import certifi  # what requests trusts, where the system's own list may be missing

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:
        return ssl.create_default_context()


@dataclass(frozen=True)
class Credentials:
    """An Authorization header for the hops to `hosts` only (the Hugging Face token goes to the hub, never to the
    storage it redirects to, nor anywhere else)."""
    hosts: frozenset[str]
    header: str = field(repr=False)

    def for_host(self, host: str | None) -> dict[str, str]:
        return {"Authorization": self.header} if (host or "").lower() in self.hosts else {}


@contextmanager
def opened(url: str, allow_private: bool, credentials: Credentials | None = None,
           extra_headers: dict[str, str] | None = None) -> Iterator[tuple[http.client.HTTPResponse, str]]:
    """(the response of the link's last redirect hop, that hop's URL); every hop checked before it is asked."""
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        try:
            address = checked_address(url, allow_private)
        except BlockedAddress as exc:
            raise JobError(str(exc)) from None
        conn = pinned_connection(url, address)
        try:
            conn.request("GET", request_target(url), headers={
                "User-Agent": "z-image-studio", "Accept-Encoding": "identity",
                **(credentials.for_host(parts.hostname) if credentials else {}), **(extra_headers or {})})
            sock = conn.sock  # kept before a closing answer lets the connection drop it
            response = conn.getresponse()
            response.studio_socket = sock
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise JobError(f"{parts.hostname} could not be reached ({type(exc).__name__}): try again, or check "
                           "the link.") from None
        location = response.getheader("Location")
        if response.status in REDIRECTS and location:
            response.close()
            conn.close()
            try:
                url = urljoin(url, location)
            except ValueError:
                url = ""
            if not is_web_address(url):
                raise JobError("The link redirects to something that is not a web address.")
            continue
        try:
            yield response, url
        finally:
            response.close()
            conn.close()
        return
    raise JobError(f"The link redirects more than {MAX_REDIRECTS} times.")


def json_answer(url: str, allow_private: bool, credentials: Credentials | None = None,
                limit: int = 8 << 20) -> tuple[int, dict | None]:
    """(status, the JSON object answered) of an API the pod asks (a model page's), the object None when the answer
    is not one or is over `limit` bytes; each hop checked as any link's."""
    with opened(url, allow_private, credentials) as (response, _final):
        status = response.status
        raw = response.read(limit + 1) if status == 200 else b""
    try:
        answer = json.loads(raw) if raw and len(raw) <= limit else None
    except ValueError:
        answer = None
    return status, answer if isinstance(answer, dict) else None


def file_name(response: http.client.HTTPResponse, url: str) -> str:
    """The name the server gives (Content-Disposition), else the link's last path part; made safe."""
    disposition = response.getheader("Content-Disposition") or ""
    match = re.search(r"filename\*=(?:UTF-8'')?([^;]+)", disposition, re.IGNORECASE) or \
        re.search(r'filename="?([^";]+)"?', disposition, re.IGNORECASE)
    name = unquote(match.group(1).strip()) if match else unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    return clean_filename(name or "download")


@contextmanager
def _cut_on_stop(job, response: http.client.HTTPResponse) -> Iterator[None]:
    """While the body is read, a stop asked of `job` shuts the connection, so a read waiting on a link gone quiet
    returns at once instead of after READ_TIMEOUT_S; the reader then sees the stop. Each look also records the
    bytes so far, which a throttled report may have held back when the link went quiet."""
    asked, sock = getattr(job, "stop_requested", None), getattr(response, "studio_socket", None)
    flush = getattr(job, "flush", lambda: None)
    if asked is None or sock is None:
        yield
        return
    finished = threading.Event()

    def watch() -> None:
        while not finished.wait(STOP_WATCH_S):
            flush()
            if asked():
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed: the read has ended anyway
                return

    watcher = threading.Thread(target=watch, name="link-stop-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        finished.set()
        watcher.join()


@dataclass
class Fetched:
    name: str  # the server's name for the file, else the link's last part; made safe
    head: bytes  # its first bytes, to tell what it is
    kind: str  # the Content-Type it came with


RESUME_TRIES = 5  # answers in a row that bring nothing new before a broken download gives up


def fetch_to(job, url: str, target: Path, max_bytes: int, allow_private: bool,
             credentials: Credentials | None = None) -> Fetched:
    """Streams the link into `target` with byte progress and stop checks on `job`, refusing more than
    `max_bytes`; a connection that breaks off goes on from the bytes that arrived (HTTP Range, checked with If-Range)
    when the server allows it. JobError says what went wrong (the link's host, its answer, the limit)."""
    done, fruitless, validator, fetched = 0, 0, None, None
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        before = done
        resuming = {"Range": f"bytes={done}-", "If-Range": validator} if done and validator else {}
        with opened(url, allow_private, credentials, resuming) as (response, final_url):
            host = urlsplit(final_url).hostname
            if response.status not in (200, 206) or (response.status == 206 and not resuming):
                raise JobError(f"{host} answered {response.status} {response.reason or ''}".rstrip()
                               + ": check that the link is right and public.")
            if response.status == 200:
                done = 0  # the whole file (again)
            total = done + int(response.getheader("Content-Length") or 0) if response.getheader("Content-Length") \
                else 0
            if total > max_bytes:
                raise JobError(f"The file is {total / 2**20:,.0f} MB, over the limit of {max_bytes / 2**20:,.0f} MB "
                               "(MAX_UPLOAD_MB).")
            ranges = (response.getheader("Accept-Ranges") or "").lower() == "bytes" or response.status == 206
            validator = (response.getheader("ETag") or response.getheader("Last-Modified")) if ranges else None
            if fetched is None:
                fetched = Fetched(file_name(response, final_url), b"",
                                  (response.getheader("Content-Type") or "unknown").split(";")[0])
            broken = None
            try:
                with open(target, "r+b" if done else "wb") as sink, _cut_on_stop(job, response):
                    sink.seek(done)
                    sink.truncate()
                    while block := response.read1(1 << 20):
                        job.check_stop()
                        if len(fetched.head) < 16 and done < 16:
                            fetched.head = (fetched.head[:done] + block)[:16]
                        done += len(block)
                        if done > max_bytes:
                            raise JobError(f"The file is over the limit of {max_bytes / 2**20:,.0f} MB "
                                           "(MAX_UPLOAD_MB).")
                        sink.write(block)
                        job.update(phase="downloading", bytes_done=done, bytes_total=total or None,
                                   message=f"Downloading {fetched.name}")
            except (TimeoutError, ConnectionError, ssl.SSLError, http.client.HTTPException) as exc:
                broken = type(exc).__name__
            job.check_stop()  # a stop cuts the connection: what came before it is not the whole file
            if broken is None and not (total and done < total):
                return fetched
            if not validator:
                of = f" of {format_bytes(total)}" if total else ""
                why = f" ({broken})" if broken else ""
                raise JobError(f"The download of {fetched.name} stopped at {format_bytes(done)}{of}: {host} closed the "
                               f"connection{why}. Try again.")
        fruitless = 0 if done > before else fruitless + 1
        if fruitless >= RESUME_TRIES:
            raise JobError(f"The download of {fetched.name} stopped at {format_bytes(done)} of {format_bytes(total)} "
                           f"{fruitless} times in a row: {host} keeps closing the connection. Try again.")
