"""A local stand-in for GitHub's REST API: the issue-comment, commit-comment and GraphQL
``minimizeComment`` endpoints, answering with GitHub's documented wire format.

It records every request (method, path, query, headers, JSON body) so tests assert on what the
client sent. Runs ``http.server`` in a thread on 127.0.0.1, port 0.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DOCS = "https://docs.github.com/rest"
BOT = {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"}


@dataclass(frozen=True)
class Raw:
    """A scripted body sent byte for byte with its own content type, not as JSON (the HTML page
    a proxy or an outage answers)."""

    content: bytes
    content_type: str = "text/html; charset=utf-8"
HUMAN = {"login": "octocat", "id": 583231, "type": "User"}


@dataclass
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Scripted:
    """A canned answer for the next request that matches ``method`` and ``path`` (a regex)."""

    method: str
    path: str
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1


class FakeGitHub:
    """State and behaviour of the fake API; ``base_url`` is its root."""

    def __init__(self, token: str, repository: str = "octo/models", repository_id: int = 123,
                 prefix: str = "", viewer: dict[str, Any] | None = None) -> None:
        self.token = token
        #: the token's own account: None for an installation token (the GITHUB_TOKEN of GitHub
        #: Actions), which writes as github-actions[bot] and may not read GET /user
        self.viewer = viewer
        self.repository = repository
        self.repository_id = repository_id
        self.prefix = prefix  # "/api/v3" to act as GitHub Enterprise
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.commit_comments: list[dict[str, Any]] = []
        self.minimized: set[str] = set()
        self.requests: list[Recorded] = []
        self.scripted: list[Scripted] = []
        self.list_barrier: threading.Barrier | None = None
        self._next_id = 1000
        self._clock = dt.datetime(2026, 11, 24, 8, 0, 0, tzinfo=dt.timezone.utc)
        self._lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        daemon=True)

    @property
    def base_url(self) -> str:
        """Return the REST root, e.g. ``http://127.0.0.1:PORT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self.prefix}"

    @property
    def host_url(self) -> str:
        """Return ``http://127.0.0.1:PORT`` without the Enterprise prefix."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeGitHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def script(self, method: str, path: str, status: int, body: Any = None,
               headers: dict[str, str] | None = None, times: int = 1) -> None:
        """Answer the next ``times`` matching requests with ``status``."""
        self.scripted.append(Scripted(method, path, status, body, headers or {}, times))

    def add_comment(self, number: int, body: str, user: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
        """Store a comment as if someone had posted it; return it."""
        with self._lock:
            self._next_id += 1
            self._clock += dt.timedelta(seconds=1)
            stamp = self._clock.strftime("%Y-%m-%dT%H:%M:%SZ")
            comment_id = self._next_id
            comment = {
                "id": comment_id,
                "node_id": f"IC_kwDOAB{comment_id:08d}",
                "url": f"{self.base_url}/repos/{self.repository}/issues/comments/{comment_id}",
                "html_url": f"https://github.com/{self.repository}/pull/{number}"
                            f"#issuecomment-{comment_id}",
                "issue_url": f"{self.base_url}/repos/{self.repository}/issues/{number}",
                "body": body,
                "user": dict(user or BOT),
                "created_at": stamp,
                "updated_at": stamp,
                "author_association": "NONE",
            }
            self.comments.setdefault(number, []).append(comment)
            return comment

    def bodies(self, number: int) -> list[str]:
        """Return the bodies of an issue's comments, oldest first."""
        return [c["body"] for c in self.comments.get(number, [])]

    def requests_of(self, method: str) -> list[Recorded]:
        """Return the recorded requests with ``method``."""
        return [r for r in self.requests if r.method == method]

    # --- routing -----------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: dict[str, str], raw_body: bytes
               ) -> tuple[int, dict[str, str], Any]:
        split = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        body: Any = None
        if raw_body:
            try:
                body = json.loads(raw_body)
            except json.JSONDecodeError:
                return 400, {}, {"message": "Problems parsing JSON", "documentation_url": DOCS}
        path = split.path
        with self._lock:
            self.requests.append(Recorded(method, path, query, headers, body))
            for scripted in self.scripted:
                if scripted.method == method and re.fullmatch(scripted.path, path):
                    scripted.times -= 1
                    if scripted.times <= 0:
                        self.scripted.remove(scripted)
                    return scripted.status, scripted.headers, scripted.body
        if headers.get("authorization") not in (f"Bearer {self.token}", f"token {self.token}"):
            return 401, {}, {"message": "Bad credentials", "documentation_url": DOCS,
                             "status": "401"}
        if self.prefix:
            if path == "/api/graphql":
                return self._graphql(body)
            if not path.startswith(self.prefix):
                return 404, {}, _not_found()
            path = path[len(self.prefix):]
        elif path == "/graphql":
            return self._graphql(body)
        return self._rest(method, path, query, body)

    @property
    def author(self) -> dict[str, Any]:
        """Return the ``user`` object of what the token writes."""
        return dict(self.viewer or BOT)

    def _rest(self, method: str, path: str, query: dict[str, str], body: Any
              ) -> tuple[int, dict[str, str], Any]:
        repo = re.escape(self.repository)
        if path == "/user" and method == "GET":
            # https://docs.github.com/rest/users/users#get-the-authenticated-user
            if self.viewer is None:
                return 403, {}, {"message": "Resource not accessible by integration",
                                 "documentation_url": f"{DOCS}/users/users#get-the-"
                                                      "authenticated-user", "status": "403"}
            return 200, {}, {**self.viewer, "node_id": "U_kgDOAAjmfw",
                             "html_url": f"https://github.com/{self.viewer['login']}",
                             "site_admin": False, "name": None}
        match = re.fullmatch(rf"/repos/{repo}/issues/(\d+)/comments", path) or re.fullmatch(
            rf"/repositories/{self.repository_id}/issues/(\d+)/comments", path)
        if match and method == "GET":
            return self._list(int(match.group(1)), query)
        if match and method == "POST":
            problem = _invalid_body(body)
            if problem:
                return 422, {}, problem
            comment = self.add_comment(int(match.group(1)), body["body"], self.author)
            return 201, {"Location": comment["url"]}, comment
        match = re.fullmatch(rf"/repos/{repo}/issues/comments/(\d+)", path)
        if match and method in ("PATCH", "DELETE"):
            found = self._find(int(match.group(1)))
            if found is None:
                return 404, {}, _not_found()
            number, comment = found
            if method == "DELETE":
                with self._lock:
                    self.comments[number].remove(comment)
                return 204, {}, None
            problem = _invalid_body(body)
            if problem:
                return 422, {}, problem
            with self._lock:
                self._clock += dt.timedelta(seconds=1)
                comment["body"] = body["body"]
                comment["updated_at"] = self._clock.strftime("%Y-%m-%dT%H:%M:%SZ")
            return 200, {}, comment
        match = re.fullmatch(rf"/repos/{repo}/commits/([0-9a-f]{{7,40}})/comments", path)
        if match and method == "POST":
            problem = _invalid_body(body)
            if problem:
                return 422, {}, problem
            with self._lock:
                self._next_id += 1
                comment = {"id": self._next_id, "node_id": f"CC_kwDO{self._next_id:08d}",
                           "body": body["body"], "commit_id": match.group(1),
                           "user": dict(self.author),
                           "html_url": f"https://github.com/{self.repository}/commit/"
                                       f"{match.group(1)}#commitcomment-{self._next_id}",
                           "created_at": "2026-11-24T08:00:00Z",
                           "updated_at": "2026-11-24T08:00:00Z", "path": None, "position": None,
                           "line": None}
                self.commit_comments.append(comment)
            return 201, {}, comment
        return 404, {}, _not_found()

    def _list(self, number: int, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        if self.list_barrier is not None and "page" not in query:
            barrier = self.list_barrier
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass
        per_page = min(int(query.get("per_page", "30")), 100)
        page = int(query.get("page", "1"))
        with self._lock:
            everything = list(self.comments.get(number, []))
        last = max((len(everything) + per_page - 1) // per_page, 1)
        chunk = everything[(page - 1) * per_page: page * per_page]
        links = []
        # GitHub's next/last links name the repository by id, not owner/name.
        template = (f"<{self.base_url}/repositories/{self.repository_id}/issues/{number}/comments"
                    f"?page={{page}}&per_page={per_page}>; rel=\"{{rel}}\"")
        if page > 1:
            links.append(template.format(page=page - 1, rel="prev"))
            links.append(template.format(page=1, rel="first"))
        if page < last:
            links.append(template.format(page=page + 1, rel="next"))
            links.append(template.format(page=last, rel="last"))
        headers = {"Link": ", ".join(links)} if links else {}
        return 200, headers, chunk

    def _find(self, comment_id: int) -> tuple[int, dict[str, Any]] | None:
        with self._lock:
            for number, comments in self.comments.items():
                for comment in comments:
                    if comment["id"] == comment_id:
                        return number, comment
        return None

    def _graphql(self, body: Any) -> tuple[int, dict[str, str], Any]:
        query = str((body or {}).get("query", ""))
        node_id = str(((body or {}).get("variables") or {}).get("id", ""))
        if "minimizeComment" not in query or "OUTDATED" not in query:
            return 200, {}, {"errors": [{"message": "unsupported query in the fake"}]}
        known = any(c["node_id"] == node_id for cs in self.comments.values() for c in cs)
        if not known:
            return 200, {}, {"data": {"minimizeComment": None}, "errors": [
                {"type": "NOT_FOUND", "path": ["minimizeComment"],
                 "message": f"Could not resolve to a node with the global id of '{node_id}'"}]}
        with self._lock:
            self.minimized.add(node_id)
        return 200, {}, {"data": {"minimizeComment": {"minimizedComment": {"isMinimized": True}}}}


def _invalid_body(body: Any) -> dict[str, Any] | None:
    text = body.get("body") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text:
        return {"message": "Validation Failed", "errors": [
            {"resource": "IssueComment", "code": "missing_field", "field": "body"}],
            "documentation_url": DOCS, "status": "422"}
    if len(text) > 65536:
        return {"message": "Validation Failed", "errors": [
            {"resource": "IssueComment", "code": "custom", "field": "body",
             "message": "body is too long (maximum is 65536 characters)"}],
            "documentation_url": DOCS, "status": "422"}
    return None


def _not_found() -> dict[str, Any]:
    return {"message": "Not Found", "documentation_url": DOCS, "status": "404"}


def _handler(fake: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, body = fake.handle(self.command, self.path, headers, raw)
            # bytes go out as they are, a Raw with its own type, anything else as JSON
            content_type = "application/json; charset=utf-8" if body is not None else ""
            if isinstance(body, Raw):
                payload, content_type = body.content, body.content_type
            elif isinstance(body, bytes):
                payload, content_type = body, ""
            else:
                payload = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            if not isinstance(body, Raw):
                self.send_header("X-GitHub-Media-Type", "github.v3; format=json")
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def serve(token: str, **kwargs: Any) -> Iterator[FakeGitHub]:
    """Yield a started fake; stop it afterwards."""
    fake = FakeGitHub(token, **kwargs).start()
    try:
        yield fake
    finally:
        fake.stop()
