"""The GitHub REST client report (PR and commit comments) and monitor (drift issues) share, on
``requests``: comments, issues, minimizing.

The token is checked before it is used (:func:`check_token`: one line of printable ASCII), never
logged and never part of an exception message: every text that leaves this module passes through
:meth:`GitHubClient.scrub`, and the exceptions of ``requests`` are named by type where their text
could quote a header. The token goes only to the API's own origin (scheme, host and port of the
configured API URL): a redirect is followed only there, and pagination follows the ``Link``
header's ``next`` URL as GitHub gives it (``/repositories/<id>/…``) when it stays there; both stop
with an error when they do not. A 2xx answer that is not JSON is an infrastructure error. Rate
limits are honoured as GitHub documents them; ``sleep`` and ``clock`` are injectable so tests
assert on the waits.
"""

from __future__ import annotations

import logging
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import requests

from shipml import __version__
from shipml.errors import ConfigError, InfrastructureError

log = logging.getLogger("shipml.report")

API_VERSION = "2022-11-28"
PER_PAGE = 100
#: the author of what the GITHUB_TOKEN of GitHub Actions writes (it may not read GET /user)
ACTIONS_BOT = "github-actions[bot]"
#: GitHub rejects comment bodies longer than this (characters)
MAX_COMMENT_CHARS = 65536

TOKEN_INVALID = (
    "GitHub answered 401 Bad credentials: the token is invalid or expired. Pass a valid token "
    "through the action's `github-token` input (default: ${{ github.token }}) or GITHUB_TOKEN."
)
#: the permission a 403 asks for when the caller names none (the report's PR comment)
PULL_REQUESTS_WRITE = "pull-requests: write"
TOKEN_READ_ONLY = (
    "GitHub answered 403 '{message}' for {method} {path}: the token lacks the permission this "
    "needs. Give the job write access:\n"
    "    permissions:\n"
    "{permissions}"
)
FORK_TOKEN = (
    "On a pull request from a fork the GITHUB_TOKEN is read-only whatever `permissions:` says: "
    "upload .shipml as an artifact and run `shipml report` from a separate workflow triggered by "
    "`workflow_run` (which runs with the base repository's token), passing the pull request's "
    "number as the action's `pull-request` input (SHIPML_PR_NUMBER)."
)
NOT_FOUND = (
    "GitHub answered 404 Not Found for {method} {path}: check the repository ({repository}) and "
    "the pull request number, and that the token can see that repository."
)
UNREACHABLE = "GitHub API at {api_url} unreachable after {attempts} attempts: {reason}"
TOKEN_MALFORMED = (
    "the GitHub token from {source} {problem}, so it cannot be sent: a token is one line of "
    "printable ASCII (ghs_…, ghp_…, github_pat_…). Check the secret or credential that sets it; "
    "a value with a line break or a space usually holds two secrets or a whole header"
)
OFF_ORIGIN = (
    "{what} points to {target}, not to the GitHub API at {origin}: "
    "shipml stopped there rather than send the token to another host. Check GITHUB_API_URL "
    "(GitHub Enterprise: https://HOST/api/v3) and any proxy in between"
)
NOT_JSON = (
    "GitHub answered {method} {path} with HTTP {status} and {found}: something between shipml "
    "and GitHub (a proxy, a captive portal, a wrong "
    "GITHUB_API_URL) answered instead. Check GITHUB_API_URL (GitHub Enterprise: "
    "https://HOST/api/v3) and retry"
)
BAD_API_URL = "GitHub API URL {api_url!r} is not usable ({reason}); set GITHUB_API_URL to " \
    "https://api.github.com or https://HOST/api/v3"

_RETRY_STATUSES = frozenset({500, 502, 503, 504})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
_DEFAULT_PORTS = {"http": 80, "https": 443}
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")
_SECONDARY_MIN_WAIT_S = 60.0
_JSON_NAMES: dict[type, str] = {dict: "object", list: "array", str: "string", int: "number",
                                float: "number", bool: "boolean"}
_T = TypeVar("_T", dict[str, Any], list[Any])


class GitHubRequestError(ConfigError):
    """GitHub refused a request for a reason the user can fix (exit 2)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class GitHubUnavailable(InfrastructureError):
    """GitHub could not be reached, or kept failing, after retries (exit 3)."""


class GitHubClient:
    """Thin adapter over GitHub's REST API for the calls ``shipml report`` and ``shipml monitor``
    need; ``permission`` is the ``permissions:`` line a 403 asks the job to grant."""

    def __init__(
        self,
        token: str,
        api_url: str = "https://api.github.com",
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.time,
        timeout: tuple[float, float] = (5.0, 30.0),
        max_attempts: int = 5,
        max_wait_s: float = 900.0,
        permission: str = PULL_REQUESTS_WRITE,
    ) -> None:
        token = check_token(token, "the caller") if token else token
        self.api_url = api_url.rstrip("/")
        self._origin = origin(self.api_url)
        if not self._origin[1]:
            raise ConfigError(BAD_API_URL.format(api_url=api_url, reason="no host"))
        self._token = token
        # Forms the token may take in an exception's text: as is, repr-escaped, and its lines.
        self._secrets = sorted({token, repr(token)[1:-1], *(p for p in token.split() if len(p) > 3)}
                               - {""}, key=len, reverse=True) if token else []
        self._session = session or requests.Session()
        self._sleep = sleep or _sleep
        self._clock = clock
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._max_wait_s = max_wait_s
        self._permission = permission
        self._login = ""
        self._headers = {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {token}",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": f"shipml/{__version__}",
        }

    def scrub(self, text: str) -> str:
        """Return ``text`` with the token (as is, repr-escaped, or any of its parts) replaced
        by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    # --- transport -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        repository: str = "",
        allow: frozenset[int] = frozenset(),
        permission: str = "",
    ) -> requests.Response:
        """Send one request with retries; return the response (2xx or a status in ``allow``).

        A redirect is followed (the same request again) only within the API's origin.
        ``permission`` is what a 403 asks the job to grant (default: the client's). Raises
        GitHubRequestError for 4xx answers a person must act on and GitHubUnavailable when
        GitHub stays unreachable, keeps answering 5xx, rate-limits beyond ``max_wait_s``,
        redirects to another origin, or answers a 2xx whose body is not JSON.
        """
        url = path_or_url if "://" in path_or_url else f"{self.api_url}{path_or_url}"
        if origin(url) != self._origin:
            raise GitHubUnavailable(OFF_ORIGIN.format(
                what=f"{method} {_path(url)}", target=_origin_text(url),
                origin=_origin_text(self.api_url)))
        rate_limited = 0
        redirects = 0
        reason = ""
        attempt = 0
        while attempt < self._max_attempts:
            attempt += 1
            try:
                # requests would follow a redirect anywhere (dropping the token): never let it.
                response = self._session.request(
                    method, url, headers=self._headers, json=json_body, params=params,
                    timeout=self._timeout, allow_redirects=False,
                )
            except (requests.exceptions.InvalidHeader, UnicodeError) as exc:
                # The text of these quotes the header, token included: name the type only.
                raise ConfigError(TOKEN_MALFORMED.format(
                    source="the environment", problem=f"was refused by requests "
                                                      f"({type(exc).__name__})")) from None
            except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                    requests.exceptions.MissingSchema) as exc:
                raise ConfigError(BAD_API_URL.format(api_url=self.api_url,
                                                     reason=type(exc).__name__)) from None
            except requests.RequestException as exc:
                reason = self.scrub(f"{type(exc).__name__}: {exc}")
                wait = float(2 ** (attempt - 1))
                log.warning("report: %s %s failed (%s); retrying in %.0f s", method,
                            _path(url), reason, wait)
                if attempt < self._max_attempts:
                    self._sleep(wait)
                continue
            status = response.status_code
            if status in _REDIRECTS:
                redirects += 1
                target = self._redirect(method, url, response, redirects)
                if status == 303:
                    method, json_body = "GET", None
                url, params = target, None
                attempt -= 1  # a redirect is not a failed attempt
                continue
            if status < 400:
                _check_json(method, url, response)
                return response
            if status in allow and not (status in (403, 429) and _is_rate_limit(response)):
                return response
            if status in _RETRY_STATUSES:
                reason = f"HTTP {status}"
                wait = float(2 ** (attempt - 1))
            elif status in (403, 429) and _is_rate_limit(response):
                rate_limited += 1
                wait = self._rate_limit_wait(response, rate_limited)
                reason = f"rate limited (HTTP {status})"
                if wait > self._max_wait_s:
                    raise GitHubUnavailable(
                        f"GitHub rate limit: the next request is allowed in {wait:.0f} s, more "
                        f"than the {self._max_wait_s:.0f} s shipml waits; run the report later"
                    )
            else:
                raise self._error(method, url, response, repository,
                                  permission or self._permission)
            if attempt < self._max_attempts:
                log.warning("report: %s %s: %s; retrying in %.0f s", method, _path(url), reason,
                            wait)
                self._sleep(wait)
        raise GitHubUnavailable(UNREACHABLE.format(api_url=self.api_url,
                                                   attempts=self._max_attempts, reason=reason))

    def _redirect(self, method: str, url: str, response: requests.Response, count: int) -> str:
        # GitHub redirects a renamed repository's API URLs (301) within the API; anything that
        # leaves the API's origin is not GitHub's answer to this request.
        location = response.headers.get("location", "").strip()
        what = f"GitHub's {response.status_code} redirect for {method} {_path(url)}"
        if not location:
            raise GitHubUnavailable(f"{what} names no Location")
        target = urllib.parse.urljoin(url, location)
        if origin(target) != self._origin:
            raise GitHubUnavailable(OFF_ORIGIN.format(what=what, target=_origin_text(target),
                                                      origin=_origin_text(self.api_url)))
        if count > _MAX_REDIRECTS:
            raise GitHubUnavailable(f"{what}: more than {_MAX_REDIRECTS} redirects in a row")
        log.info("report: %s %s redirected (%d) to %s", method, _path(url),
                 response.status_code, _path(target))
        return target

    def _rate_limit_wait(self, response: requests.Response, count: int) -> float:
        # https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api
        retry_after = response.headers.get("retry-after", "").strip()
        if retry_after.isdigit():
            return float(retry_after)
        if response.headers.get("x-ratelimit-remaining") == "0":
            reset = response.headers.get("x-ratelimit-reset", "").strip()
            if reset.isdigit():
                return max(float(reset) - self._clock(), 0.0) + 1.0
        return float(_SECONDARY_MIN_WAIT_S * 2 ** (count - 1))

    def _error(self, method: str, url: str, response: requests.Response,
               repository: str, permission: str) -> GitHubRequestError:
        status = response.status_code
        message = self.scrub(_message(response))
        path = _path(url)
        if status == 401:
            text = TOKEN_INVALID
        elif status == 403:
            text = TOKEN_READ_ONLY.format(message=message, method=method, path=path,
                                          permissions=_permissions_block(permission))
            if permission == PULL_REQUESTS_WRITE:
                text += FORK_TOKEN
        elif status == 404:
            text = NOT_FOUND.format(method=method, path=path, repository=repository or "?")
        else:
            text = f"GitHub answered {status} for {method} {path}: {message}"
        return GitHubRequestError(self.scrub(text), status)

    def paginate(self, path: str, *, repository: str = "") -> Iterator[dict[str, Any]]:
        """Yield every object of a list endpoint, following ``Link: rel="next"`` as given."""
        url: str | None = f"{self.api_url}{path}"
        params: Mapping[str, Any] | None = {"per_page": PER_PAGE}
        while url:
            response = self.request("GET", url, params=params, repository=repository)
            page = _json(response, "GET", url, list)
            yield from page
            following = response.links.get("next", {}).get("url")
            if following and origin(following) != self._origin:
                raise GitHubUnavailable(OFF_ORIGIN.format(
                    what=f"GitHub's next-page link after GET {_path(url)}",
                    target=_origin_text(following),
                    origin=_origin_text(self.api_url)))
            url = following
            params = None  # the next URL carries its own query string

    # --- endpoints -------------------------------------------------------------------------

    def request_json(self, method: str, path: str, *, json_body: Mapping[str, Any] | None = None,
                     repository: str = "") -> dict[str, Any]:
        """Send one request (as :meth:`request`) and return the JSON object GitHub answered.

        Raises what :meth:`request` raises, and GitHubUnavailable (exit 3) when the 2xx answer
        is not a JSON object.
        """
        response = self.request(method, path, json_body=json_body, repository=repository)
        return _json(response, method, path, dict)

    def login(self) -> str:
        """Return the login of the token's own account, the author of what it writes: ``GET
        /user``, or ``github-actions[bot]`` when GitHub answers 403 there (an installation
        token, such as the GITHUB_TOKEN of GitHub Actions, may not read it). Asked once per
        client. Raises the client's errors, and GitHubUnavailable for an answer without a login.
        """
        if not self._login:
            response = self.request("GET", "/user", allow=frozenset({403}))
            if response.status_code == 403:
                self._login = ACTIONS_BOT
            else:
                login = _json(response, "GET", "/user", dict).get("login")
                if not isinstance(login, str) or not login:
                    raise GitHubUnavailable(NOT_JSON.format(
                        method="GET", path="/user", status=response.status_code,
                        found="a user without a login"))
                self._login = login
        return self._login

    def list_issue_comments(self, repository: str, number: int) -> list[dict[str, Any]]:
        """Return every comment of an issue or pull request, oldest first."""
        return list(self.paginate(f"/repos/{repository}/issues/{number}/comments",
                                  repository=repository))

    def create_issue_comment(self, repository: str, number: int, body: str) -> dict[str, Any]:
        """Create a comment on an issue or pull request; return the comment object."""
        url = f"/repos/{repository}/issues/{number}/comments"
        response = self.request("POST", url, json_body={"body": body}, repository=repository)
        return _json(response, "POST", url, dict)

    def update_issue_comment(self, repository: str, comment_id: int, body: str) -> dict[str, Any]:
        """Replace a comment's body; return the comment object."""
        url = f"/repos/{repository}/issues/comments/{comment_id}"
        response = self.request("PATCH", url, json_body={"body": body}, repository=repository)
        return _json(response, "PATCH", url, dict)

    def delete_issue_comment(self, repository: str, comment_id: int) -> bool:
        """Delete a comment; return False when it was already gone (another job deleted it)."""
        response = self.request("DELETE", f"/repos/{repository}/issues/comments/{comment_id}",
                                repository=repository, allow=frozenset({404}))
        return response.status_code != 404

    def create_commit_comment(self, repository: str, sha: str, body: str) -> dict[str, Any]:
        """Comment on a commit; return the comment object."""
        url = f"/repos/{repository}/commits/{sha}/comments"
        response = self.request("POST", url, json_body={"body": body}, repository=repository,
                                permission="contents: write")
        return _json(response, "POST", url, dict)

    def minimize_comment(self, node_id: str) -> None:
        """Hide a comment as outdated (GraphQL ``minimizeComment``, classifier OUTDATED)."""
        query = (
            "mutation($id: ID!) { minimizeComment(input: {subjectId: $id, classifier: OUTDATED}) "
            "{ minimizedComment { isMinimized } } }"
        )
        url = graphql_url(self.api_url)
        response = self.request("POST", url,
                                json_body={"query": query, "variables": {"id": node_id}})
        answer = _json(response, "POST", url, dict)
        if answer.get("errors"):
            first = answer["errors"][0]
            text = first.get("message", "") if isinstance(first, dict) else str(first)
            raise GitHubRequestError(self.scrub(f"GitHub GraphQL minimizeComment failed: {text}"),
                                     200)


def _permissions_block(permission: str) -> str:
    # The YAML to paste: the permission asked for, plus read access to the code.
    granted = [permission] if permission.startswith("contents:") else [permission,
                                                                      "contents: read"]
    return "".join(f"      {line}\n" for line in granted)


def authored_by(item: Mapping[str, Any], login: str) -> bool:
    """Return True when a comment or issue (GitHub's object, ``user.login``) was written by
    ``login``, the token's own account: a look-alike by anyone else is never edited, hidden or
    deleted."""
    user = item.get("user")
    return isinstance(user, Mapping) and user.get("login") == login


def check_token(token: str, source: str) -> str:
    """Return ``token`` without surrounding whitespace (a trailing newline from a file or
    ``$(cat …)``); raise ConfigError (exit 2) naming ``source`` when what is left holds
    whitespace, control characters or anything but printable ASCII. The message never contains
    the token or a part of it."""
    stripped = token.strip()
    if not stripped or _TOKEN_CHARS.fullmatch(stripped):
        return stripped
    if any(char in "\r\n" for char in stripped):
        problem = "holds a line break"
    elif any(char.isspace() for char in stripped):
        problem = "holds whitespace"
    elif any(ord(char) < 0x20 or ord(char) == 0x7F for char in stripped):
        problem = "holds a control character"
    else:
        problem = "holds a character that is not ASCII"
    raise ConfigError(TOKEN_MALFORMED.format(source=source, problem=problem))


def origin(url: str) -> tuple[str, str, int | None]:
    """Return the origin of ``url``: scheme, host (lowercase) and port (the scheme's default
    when none is written); the token is sent only to the API URL's origin."""
    try:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        port = parts.port if parts.port is not None else _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return ("", "", None)
    return (scheme, (parts.hostname or "").lower(), port)


def _origin_text(url: str) -> str:
    scheme, host, port = origin(url)
    if not host:
        return "an unusable URL"
    default = _DEFAULT_PORTS.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def _sleep(seconds: float) -> None:
    # Looked up at call time, so a test can replace time.sleep for a whole CLI run.
    time.sleep(seconds)


def graphql_url(api_url: str) -> str:
    """Return the GraphQL endpoint beside a REST root (GitHub Enterprise: ``/api/graphql``)."""
    root = api_url.rstrip("/")
    if root.endswith("/api/v3"):
        return root[: -len("/v3")] + "/graphql"
    return root + "/graphql"


def _is_rate_limit(response: requests.Response) -> bool:
    if response.status_code == 429:
        return True
    if "retry-after" in response.headers or response.headers.get("x-ratelimit-remaining") == "0":
        return True
    return "rate limit" in _message(response).lower()


def _check_json(method: str, url: str, response: requests.Response) -> None:
    # Every 2xx answer of the REST API with a body is JSON (204 has none); anything else came
    # from something in between and must not reach a caller as data.
    if not response.content:
        return
    try:
        response.json()
    except ValueError:
        kind = response.headers.get("content-type", "").split(";", 1)[0].strip()
        raise GitHubUnavailable(NOT_JSON.format(
            method=method, path=_path(url), status=response.status_code,
            found=f"a {kind or 'untyped'} body that is not JSON")) from None


def _json(response: requests.Response, method: str, url: str, expected: type[_T]) -> _T:
    """Return the answer's JSON when it is an ``expected`` (dict or list); raise
    GitHubUnavailable otherwise."""
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if isinstance(answer, expected):
        return answer
    found = "no body" if not response.content else (
        f"a JSON {_JSON_NAMES.get(type(answer), 'value')}" if answer is not None
        else "a body that is not JSON")
    raise GitHubUnavailable(NOT_JSON.format(
        method=method, path=_path(url), status=response.status_code,
        found=f"{found} where a JSON {_JSON_NAMES[expected]} was expected"))


def _message(response: requests.Response) -> str:
    try:
        answer = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(answer, dict):
        return str(answer.get("message", ""))
    return ""


def _path(url: str) -> str:
    # Only the path goes into messages: hosts and query strings say nothing a person needs.
    without_scheme = url.split("://", 1)[-1]
    slash = without_scheme.find("/")
    path = without_scheme[slash:] if slash >= 0 else "/"
    return path.split("?", 1)[0]
