"""Every JSON request body, parsed once with a size and a nesting limit, before any view runs.

Python's json module recurses once per nesting level, so a body like `{"a":{"a":...}}` a hundred
thousand levels deep raises RecursionError (a 500 with a traceback) in the parser or in whatever walks
the result later. The depth is measured on the raw bytes first, without recursion; the size is
checked before the body is read. Too deep or malformed: 400; too big: 413; never a 500.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate

from flask import current_app, g, request

MAX_DEPTH = 64
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
CONFIG_MAX_BYTES = "STUDIO_JSON_MAX_BYTES"

# A JSON string (escapes included), matched by the regex engine in one step however long it is. The
# closing quote is optional so an unterminated string still matches: no retrying at every later quote,
# which would make the scan quadratic.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
# Opening brackets become byte 0x01 (+1), closing ones 0xff (-1 as a signed byte), the rest is dropped.
_DEPTH_TABLE = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class JsonBodyError(ValueError):
    """The body cannot be accepted; `status` is 400 or 413 and the message is one sentence."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def nesting_depth(data: bytes) -> int:
    """How deeply arrays and objects nest in `data` (brackets inside strings do not count)."""
    if data.count(b"[") + data.count(b"{") == 0:
        return 0
    brackets = _STRING.sub(b"", data).translate(_DEPTH_TABLE, _NOT_BRACKETS)
    if not brackets:
        return 0
    return max(0, max(accumulate(memoryview(brackets).cast("b"))))


def parse_json(data: bytes, max_depth: int = MAX_DEPTH):
    """`data` as a JSON value; JsonBodyError (400) when it nests too deeply or is not JSON."""
    if data.count(b"[") + data.count(b"{") > max_depth and nesting_depth(data) > max_depth:
        raise JsonBodyError(f"The JSON body nests deeper than {max_depth} levels: send a flatter document.")
    try:
        return json.loads(data)
    except RecursionError:  # unreachable after the depth check; kept so no input can give a 500
        raise JsonBodyError(f"The JSON body nests deeper than {max_depth} levels: send a flatter document.") from None
    except ValueError as exc:
        raise JsonBodyError(f"The request body is not valid JSON: {exc}.") from None


def max_body_bytes() -> int:
    return int(current_app.config.get(CONFIG_MAX_BYTES) or DEFAULT_MAX_BYTES)


def _too_big(limit: int) -> JsonBodyError:
    return JsonBodyError(f"The JSON body is larger than {limit / 1048576:g} MB: send less in one request.", 413)


def _read_body(limit: int) -> bytes:
    length = request.content_length
    if length is not None and length > limit:
        raise _too_big(limit)
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise _too_big(limit)
    return data


def read_json_request() -> None:
    """Before every request: parse a JSON body (if any) under the limits and keep it for `json_body()`.

    Raises JsonBodyError; the app answers it as JSON `{"error", "details"}` with its status.
    """
    if "studio_json_read" in g:
        return
    g.studio_json_read = True
    if request.method not in BODY_METHODS or not request.is_json:
        return
    data = _read_body(max_body_bytes())
    if data.strip():
        g.studio_json_body = parse_json(data)


def request_json(optional: bool = False):
    """The parsed JSON body; `None` when there is none (`optional`) or a JsonBodyError when it is needed."""
    read_json_request()
    if "studio_json_body" in g:
        return g.studio_json_body
    if optional:
        return None
    if request.is_json:
        raise JsonBodyError("The request body is empty: send a JSON object.")
    raise JsonBodyError("The request body must be JSON (Content-Type: application/json).")
