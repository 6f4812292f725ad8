"""HTTP/1.1 framing: where one request ends and the next begins, read against a deadline.

The rules a request's head must follow before anything routes it (RFC 9112): exactly one
Content-Length of ASCII digits, no Transfer-Encoding (this server takes no chunked body), header
names that are tokens, no folded lines, a bounded head. A request that breaks one of them is
answered and its connection closed, because where its body ends is unknown: reading on would let
the body of one request be run as another (request smuggling behind a proxy).

:class:`RequestReader` is the connection's buffered reader: it enforces ``read_timeout_s`` per read
(silence) and ``request_timeout_s`` for the whole head and body (a client trickling bytes), and
knows whether a request's first byte has arrived, so that a drain never closes a connection
whose request has begun.
"""

from __future__ import annotations

import re
import socket
import time
from email.message import Message
from urllib.parse import unquote

from shipml.serve._protocol import RequestError

#: the whole head (request line and headers) at most this many bytes
MAX_HEAD_BYTES = 64 * 1024
#: a header name is an RFC 9110 token
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_DIGITS = re.compile(r"^[0-9]{1,18}$")
_OWS = " \t"

TRANSFER_ENCODING = ("send the body with a Content-Length header (Transfer-Encoding {value!r} is "
                     "not accepted)")
LENGTH_NOT_DIGITS = "Content-Length {value!r} is not a byte count"
LENGTH_TWICE = "Content-Length is given {count} times ({values}); send it once"
BAD_HEADER_NAME = "header name {name!r} is not a token (no spaces, no separators)"
FOLDED_HEADER = "header {name!r} is folded over several lines; send each header on one line"
MALFORMED_HEAD = "the request head is malformed: a header line has no colon"
HEAD_TOO_LARGE = "the request head has {size} bytes; at most {limit} are accepted"
REQUEST_TIMEOUT = ("the request did not arrive within {seconds:g} s (serve.request_timeout_s); send "
                   "the head and body without pauses")
ENCODED_SLASH = "the path {path!r} has an encoded '/' (%2F) in a segment; no route takes one"


class RequestTimeout(TimeoutError):
    """The request's head and body did not arrive within ``request_timeout_s``."""


class ClientGone(Exception):
    """The client closed or reset the connection while its request was being read."""


def body_length(headers: Message) -> int:
    """Return the request body's length in bytes from its framing headers.

    Raises RequestError 411 for a chunked body, 501 for any other Transfer-Encoding, 400 for a
    Content-Length that is not one run of ASCII digits (signs, underscores, spaces inside, a list)
    or that is given twice, for a header name that is not a token and for a folded header line.
    Every one of these leaves the connection to be closed: the body's end is unknown.
    """
    if headers.defects:
        raise RequestError(400, MALFORMED_HEAD, "headers", "Name: value lines")
    for name, value in headers.items():
        if not _TOKEN.match(name):
            raise RequestError(400, BAD_HEADER_NAME.format(name=name[:64]), "headers",
                               "Name: value, with no space before the colon")
        if "\n" in value or "\r" in value:
            raise RequestError(400, FOLDED_HEADER.format(name=name[:64]), name, "one line")
    encodings = headers.get_all("Transfer-Encoding") or []
    if encodings:
        value = ", ".join(encodings)
        status = 411 if "chunked" in value.lower() else 501
        raise RequestError(status, TRANSFER_ENCODING.format(value=value[:64]), "Transfer-Encoding",
                           "no Transfer-Encoding; a Content-Length")
    lengths = headers.get_all("Content-Length") or []
    if not lengths:
        return 0
    if len(lengths) > 1:
        shown = ", ".join(repr(value[:20]) for value in lengths[:4])
        raise RequestError(400, LENGTH_TWICE.format(count=len(lengths), values=shown),
                           "Content-Length", "one Content-Length header")
    raw = lengths[0].strip(_OWS)
    if not _DIGITS.match(raw):
        raise RequestError(400, LENGTH_NOT_DIGITS.format(value=lengths[0][:32]), "Content-Length",
                           "a non-negative integer of ASCII digits")
    return int(raw)


def path_segments(target: str) -> tuple[str, ...]:
    """Return the request target's path as its segments, each percent-decoded on its own (so that
    ``%2F`` never becomes a separator), without the leading empty one: ``/v2/models/m`` gives
    ``("v2", "models", "m")``. The query is dropped.

    Raises RequestError 404 for a segment holding an encoded ``/``.
    """
    path = target.split("?", 1)[0].split("#", 1)[0]
    if "://" in path:  # absolute form: http://host/path
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    segments = tuple(unquote(part) if "%" in part else part
                     for part in path.split("/")[1:])
    if any("/" in segment for segment in segments):
        raise RequestError(404, ENCODED_SLASH.format(path=path[:256]), "path",
                           "a path whose segments hold no %2F")
    return segments


class RequestReader:
    """The buffered reader of one connection: ``readline`` and ``read`` as ``http.server`` uses
    them, each socket read bounded by ``idle_timeout`` and, once armed, by a deadline for the
    whole request.

    A read past the deadline raises :class:`RequestTimeout`; a silent peer raises
    :class:`TimeoutError`. The deadline is armed when the connection is accepted (its first
    request) or when a later request's first byte arrives.
    """

    def __init__(self, sock: socket.socket, idle_timeout: float, request_timeout: float) -> None:
        self._sock = sock
        self._idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self._buffer = b""
        self._deadline: float | None = None
        #: a byte of the current request has arrived
        self.begun = False
        self.closed = False
        #: bytes ``readline`` may still return for the head being read (None: no limit)
        self._head_budget: int | None = None

    @property
    def pending(self) -> int:
        """Return the bytes received and not read yet (a pipelined request waiting)."""
        return len(self._buffer)

    @property
    def in_request(self) -> bool:
        """Return True while a request's deadline is armed."""
        return self._deadline is not None

    def arm(self) -> None:
        """Start the request deadline now (the connection was accepted, or bytes of a request
        arrived)."""
        if self._deadline is None:
            self._deadline = time.monotonic() + self.request_timeout

    def disarm(self) -> None:
        """End the request: until the next byte only ``idle_timeout`` applies. Bytes already
        buffered are the next request's, which begins at once."""
        self._deadline = None
        self.begun = bool(self._buffer)
        if self._buffer:
            self.arm()

    def limit_head(self, budget: int | None) -> None:
        """Let ``readline`` return at most ``budget`` more bytes (the head's headers), so that a
        head over ``MAX_HEAD_BYTES`` is refused while it is read, not once it is in memory;
        None lifts the limit."""
        self._head_budget = budget

    def readline(self, limit: int = -1) -> bytes:
        """Return one line with its ``\\n`` (at most ``limit`` bytes), or what came before EOF.

        Raises RequestError 431 when the line would exceed the head's budget."""
        if self._head_budget is not None:
            line = self._readline(min(limit, self._head_budget + 1) if limit >= 0
                                  else self._head_budget + 1)
            self._head_budget -= len(line)
            if self._head_budget < 0:
                raise RequestError(431, HEAD_TOO_LARGE.format(size=f"over {MAX_HEAD_BYTES}",
                                                              limit=MAX_HEAD_BYTES),
                                   "headers", f"at most {MAX_HEAD_BYTES} bytes")
            return line
        return self._readline(limit)

    def _readline(self, limit: int) -> bytes:
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end >= 0 and (limit < 0 or end < limit):
                return self._take(end + 1)
            if limit >= 0 and len(self._buffer) >= limit:
                return self._take(limit)
            start = len(self._buffer)
            if not self._fill():
                return self._take(len(self._buffer))

    def read(self, size: int = -1) -> bytes:
        """Return ``size`` bytes, fewer only at EOF."""
        if size < 0:
            raise ValueError("read() needs a size: the body's Content-Length")
        chunks = []
        missing = size
        if self._buffer:
            chunk = self._take(min(size, len(self._buffer)))
            chunks.append(chunk)
            missing -= len(chunk)
        while missing > 0:
            chunk = self._recv(min(missing, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            missing -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        """Forget the buffer; the socket is the server's to close."""
        self.closed = True
        self._buffer = b""

    def _take(self, count: int) -> bytes:
        taken, self._buffer = self._buffer[:count], self._buffer[count:]
        return taken

    def _fill(self) -> bool:
        chunk = self._recv(65536)
        self._buffer += chunk
        return bool(chunk)

    def _recv(self, size: int) -> bytes:
        timeout = self._idle_timeout
        if self._deadline is not None:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise RequestTimeout(REQUEST_TIMEOUT.format(seconds=self.request_timeout))
            timeout = min(timeout, remaining)
        self._sock.settimeout(timeout)
        try:
            chunk = self._sock.recv(size)
        except TimeoutError:
            if self._deadline is not None and time.monotonic() >= self._deadline:
                raise RequestTimeout(REQUEST_TIMEOUT.format(seconds=self.request_timeout)) from None
            raise
        if chunk:
            self.arm()
            self.begun = True
        return chunk
