"""The GitHub stand-in of tests/report, extended with GitHub's documented issue endpoints
(list, create, update) and ``repository_dispatch``, answering with GitHub's wire format; a
scripted :class:`Raw` body goes out as it is (the HTML page a proxy or an outage answers)."""

from __future__ import annotations

import re
from typing import Any

from tests.report.fake_github import BOT, DOCS, FakeGitHub

#: GitHub's limit on client_payload's top-level properties
MAX_PAYLOAD_PROPERTIES = 10


class FakeIssues(FakeGitHub):
    """FakeGitHub plus issues and dispatches; ``issues`` by number, ``dispatches`` as received."""

    def __init__(self, token: str, **kwargs: Any) -> None:
        super().__init__(token, **kwargs)
        self.issues: dict[int, dict[str, Any]] = {}
        self.dispatches: list[dict[str, Any]] = []
        self._number = 0

    def _rest(self, method: str, path: str, query: dict[str, str], body: Any
              ) -> tuple[int, dict[str, str], Any]:
        repo = re.escape(self.repository)
        listing = re.fullmatch(rf"/repos/{repo}/issues", path) or re.fullmatch(
            rf"/repositories/{self.repository_id}/issues", path)
        if listing and method == "GET":
            return self._list_issues(query)
        if listing and method == "POST":
            if not isinstance(body, dict) or not body.get("title"):
                return 422, {}, _invalid("Issue", "title")
            return 201, {}, self._create(body)
        match = re.fullmatch(rf"/repos/{repo}/issues/(\d+)", path)
        if match and method == "PATCH":
            issue = self.issues.get(int(match[1]))
            if issue is None:
                return 404, {}, {"message": "Not Found", "documentation_url": DOCS}
            with self._lock:
                for field in ("title", "body", "state", "state_reason"):
                    if field in body:
                        issue[field] = body[field]
                if "labels" in body:
                    issue["labels"] = [_label(name) for name in body["labels"]]
                issue["closed_at"] = "2026-11-24T09:00:00Z" if issue["state"] == "closed" else None
            return 200, {}, issue
        match = re.fullmatch(rf"/repos/{repo}/issues/(\d+)/comments", path)
        if match and int(match[1]) not in self.issues and method == "POST":
            return 404, {}, {"message": "Not Found", "documentation_url": DOCS}
        if re.fullmatch(rf"/repos/{repo}/dispatches", path) and method == "POST":
            if not isinstance(body, dict) or not body.get("event_type"):
                return 422, {}, _invalid("RepositoryDispatch", "event_type")
            payload = body.get("client_payload") or {}
            if len(payload) > MAX_PAYLOAD_PROPERTIES:
                return 422, {}, {"message": "No more than 10 properties are allowed; "
                                            f"{len(payload)} were supplied.",
                                 "documentation_url": DOCS}
            self.dispatches.append(body)
            return 204, {}, None
        return super()._rest(method, path, query, body)

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._number += 1
            number = self._number
            issue = {
                "id": 5000 + number, "node_id": f"I_kwDO{number:08d}", "number": number,
                "title": body["title"], "body": body.get("body") or "", "state": "open",
                "state_reason": None, "labels": [_label(n) for n in body.get("labels") or []],
                "user": dict(BOT), "comments": 0, "closed_at": None,
                "html_url": f"https://github.com/{self.repository}/issues/{number}",
                "url": f"{self.base_url}/repos/{self.repository}/issues/{number}",
                "created_at": f"2026-11-24T08:{number:02d}:00Z",
            }
            self.issues[number] = issue
            return issue

    def _list_issues(self, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        state = query.get("state", "open")
        wanted = set(filter(None, query.get("labels", "").split(",")))
        with self._lock:
            found = [issue for issue in self.issues.values()
                     if (state == "all" or issue["state"] == state)
                     and wanted <= {label["name"] for label in issue["labels"]}]
        if query.get("direction", "desc") == "desc":
            found.reverse()
        per_page = min(int(query.get("per_page", "30")), 100)
        page = int(query.get("page", "1"))
        chunk = found[(page - 1) * per_page: page * per_page]
        headers = {}
        if page * per_page < len(found):
            extra = "".join(f"&{k}={v}" for k, v in query.items() if k not in ("page", "per_page"))
            headers["Link"] = (f"<{self.base_url}/repositories/{self.repository_id}/issues?"
                               f"page={page + 1}&per_page={per_page}{extra}>; rel=\"next\"")
        return 200, headers, chunk


def _label(name: str) -> dict[str, Any]:
    return {"id": abs(hash(name)) % 10**8, "name": name, "color": "ededed", "default": False}


def _invalid(resource: str, field: str) -> dict[str, Any]:
    return {"message": "Validation Failed", "errors": [
        {"resource": resource, "code": "missing_field", "field": field}],
        "documentation_url": DOCS, "status": "422"}
