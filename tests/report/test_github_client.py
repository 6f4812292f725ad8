"""The REST client against the local fake: requests sent, pagination, retries, errors."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from shipml.errors import EXIT_CONFIG, EXIT_INFRA
from shipml.github import (
    API_VERSION,
    GitHubClient,
    GitHubRequestError,
    GitHubUnavailable,
    graphql_url,
)
from tests.report.conftest import TOKEN
from tests.report.fake_github import HUMAN, FakeGitHub

REPO = "octo/models"


def client_for(github: FakeGitHub, waits: list[float], now: float = 1_000_000.0,
               token: str = TOKEN) -> GitHubClient:
    return GitHubClient(token, github.base_url, sleep=waits.append, clock=lambda: now)


def test_every_request_carries_the_documented_headers(github: FakeGitHub) -> None:
    client = client_for(github, [])
    client.create_issue_comment(REPO, 7, "hello")
    sent = github.requests[-1]
    assert (sent.method, sent.path, sent.body) == ("POST", f"/repos/{REPO}/issues/7/comments",
                                                   {"body": "hello"})
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["x-github-api-version"] == API_VERSION == "2022-11-28"
    assert sent.headers["accept"] == "application/vnd.github+json"
    assert sent.headers["user-agent"].startswith("shipml/")


def test_list_follows_link_next_exactly_over_several_pages(github: FakeGitHub) -> None:
    for index in range(250):
        github.add_comment(7, f"comment {index}", HUMAN)
    comments = client_for(github, []).list_issue_comments(REPO, 7)
    assert [c["body"] for c in comments] == [f"comment {i}" for i in range(250)]
    gets = github.requests_of("GET")
    assert [(r.path, r.query) for r in gets] == [
        (f"/repos/{REPO}/issues/7/comments", {"per_page": "100"}),
        ("/repositories/123/issues/7/comments", {"page": "2", "per_page": "100"}),
        ("/repositories/123/issues/7/comments", {"page": "3", "per_page": "100"}),
    ]


def test_create_update_delete_send_the_right_method_path_and_body(github: FakeGitHub) -> None:
    client = client_for(github, [])
    created = client.create_issue_comment(REPO, 7, "first")
    assert set(created) >= {"id", "node_id", "body", "user", "created_at", "updated_at",
                            "html_url"}
    updated = client.update_issue_comment(REPO, created["id"], "second")
    assert updated["body"] == "second" and github.bodies(7) == ["second"]
    assert client.delete_issue_comment(REPO, created["id"]) is True
    assert client.delete_issue_comment(REPO, created["id"]) is False  # already gone: not an error
    assert [(r.method, r.path, r.body) for r in github.requests] == [
        ("POST", f"/repos/{REPO}/issues/7/comments", {"body": "first"}),
        ("PATCH", f"/repos/{REPO}/issues/comments/{created['id']}", {"body": "second"}),
        ("DELETE", f"/repos/{REPO}/issues/comments/{created['id']}", None),
        ("DELETE", f"/repos/{REPO}/issues/comments/{created['id']}", None),
    ]
    assert github.bodies(7) == []


def test_commit_comment_and_minimize_use_their_endpoints(github: FakeGitHub) -> None:
    client = client_for(github, [])
    comment = client.create_commit_comment(REPO, "0123456789abcdef", "report")
    assert comment["commit_id"] == "0123456789abcdef"
    target = github.add_comment(7, "old")
    client.minimize_comment(target["node_id"])
    graphql = github.requests[-1]
    assert graphql.path == "/graphql" and graphql.method == "POST"
    assert graphql.body["variables"] == {"id": target["node_id"]}
    assert "classifier: OUTDATED" in graphql.body["query"]
    assert github.minimized == {target["node_id"]}


def test_minimize_reports_graphql_errors(github: FakeGitHub) -> None:
    with pytest.raises(GitHubRequestError, match="Could not resolve to a node"):
        client_for(github, []).minimize_comment("IC_missing")


def test_graphql_url_for_github_com_and_enterprise() -> None:
    assert graphql_url("https://api.github.com") == "https://api.github.com/graphql"
    assert graphql_url("https://ghe.example.com/api/v3/") == "https://ghe.example.com/api/graphql"


def test_502_then_success_backs_off_and_retries(github: FakeGitHub) -> None:
    github.script("POST", rf"/repos/{REPO}/issues/7/comments", 502, {"message": "Server Error"},
                  times=2)
    waits: list[float] = []
    client_for(github, waits).create_issue_comment(REPO, 7, "body")
    assert waits == [1.0, 2.0]
    assert len(github.requests_of("POST")) == 3
    assert github.bodies(7) == ["body"]


def test_5xx_every_time_is_an_infrastructure_error(github: FakeGitHub) -> None:
    github.script("GET", r".*", 503, {"message": "unavailable"}, times=10)
    waits: list[float] = []
    with pytest.raises(GitHubUnavailable) as raised:
        client_for(github, waits).list_issue_comments(REPO, 7)
    assert raised.value.exit_code == EXIT_INFRA
    assert "unreachable after 5 attempts: HTTP 503" in raised.value.message
    assert waits == [1.0, 2.0, 4.0, 8.0]


def test_secondary_rate_limit_waits_retry_after(github: FakeGitHub) -> None:
    github.script("POST", r".*/comments", 403,
                  {"message": "You have exceeded a secondary rate limit. Please wait a few "
                              "minutes before you try again.",
                   "documentation_url": "https://docs.github.com/rest/overview/rate-limits"},
                  headers={"Retry-After": "37"})
    waits: list[float] = []
    client_for(github, waits).create_issue_comment(REPO, 7, "body")
    assert waits == [37.0]
    assert github.bodies(7) == ["body"]


def test_primary_rate_limit_waits_until_reset(github: FakeGitHub) -> None:
    github.script("GET", r".*", 403, {"message": "API rate limit exceeded for installation ID 1."},
                  headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1000090",
                           "x-ratelimit-limit": "5000"})
    waits: list[float] = []
    client_for(github, waits, now=1_000_000.0).list_issue_comments(REPO, 7)
    assert waits == [91.0]


def test_429_without_headers_waits_a_minute_then_backs_off(github: FakeGitHub) -> None:
    github.script("GET", r".*", 429, {"message": "Too Many Requests"}, times=2)
    waits: list[float] = []
    client_for(github, waits).list_issue_comments(REPO, 7)
    assert waits == [60.0, 120.0]


def test_rate_limit_longer_than_the_cap_gives_up(github: FakeGitHub) -> None:
    github.script("GET", r".*", 429, {"message": "slow down"}, headers={"Retry-After": "3600"})
    with pytest.raises(GitHubUnavailable, match="allowed in 3600 s"):
        client_for(github, []).list_issue_comments(REPO, 7)


def test_401_says_the_token_is_invalid(github: FakeGitHub) -> None:
    client = client_for(github, [], token="ghs_wrong_but_secret_too")
    with pytest.raises(GitHubRequestError) as raised:
        client.list_issue_comments(REPO, 7)
    assert raised.value.status == 401 and raised.value.exit_code == EXIT_CONFIG
    assert raised.value.message.startswith("GitHub answered 401 Bad credentials: the token is "
                                           "invalid or expired.")
    assert "ghs_wrong_but_secret_too" not in raised.value.message


def test_403_not_accessible_explains_fork_tokens(github: FakeGitHub) -> None:
    github.script("POST", r".*", 403, {"message": "Resource not accessible by integration",
                                       "documentation_url": "https://docs.github.com/rest"})
    with pytest.raises(GitHubRequestError) as raised:
        client_for(github, []).create_issue_comment(REPO, 7, "x")
    message = raised.value.message
    assert "403 'Resource not accessible by integration'" in message
    assert "pull-requests: write" in message and "workflow_run" in message


def test_404_names_the_repository(github: FakeGitHub) -> None:
    with pytest.raises(GitHubRequestError) as raised:
        client_for(github, []).list_issue_comments("octo/nope", 7)
    assert raised.value.message.startswith(
        "GitHub answered 404 Not Found for GET /repos/octo/nope/issues/7/comments: check the "
        "repository (octo/nope)")


def test_422_carries_githubs_message(github: FakeGitHub) -> None:
    with pytest.raises(GitHubRequestError) as raised:
        client_for(github, []).create_issue_comment(REPO, 7, "x" * 70000)
    assert raised.value.status == 422
    assert raised.value.message == (
        f"GitHub answered 422 for POST /repos/{REPO}/issues/7/comments: Validation Failed")


def test_unreachable_host_retries_then_fails_without_the_token() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waits: list[float] = []
    client = GitHubClient(TOKEN, f"http://127.0.0.1:{port}", sleep=waits.append, max_attempts=3)
    with pytest.raises(GitHubUnavailable) as raised:
        client.list_issue_comments(REPO, 7)
    assert waits == [1.0, 2.0]
    assert "unreachable after 3 attempts: ConnectionError" in raised.value.message
    assert TOKEN not in raised.value.message


def test_token_echoed_by_github_is_scrubbed(github: FakeGitHub) -> None:
    github.script("GET", r".*", 400, {"message": f"bad header Bearer {TOKEN}"})
    with pytest.raises(GitHubRequestError) as raised:
        client_for(github, []).list_issue_comments(REPO, 7)
    assert TOKEN not in str(raised.value) and "Bearer ***" in str(raised.value)


HTML_PAGE = b"<!DOCTYPE html><html><body>Unicorn! GitHub is down</body></html>"


@pytest.mark.parametrize(("method", "call"), [
    ("GET", lambda client: client.list_issue_comments(REPO, 7)),
    ("POST", lambda client: client.create_issue_comment(REPO, 7, "x")),
    ("PATCH", lambda client: client.update_issue_comment(REPO, 1001, "x")),
    ("POST", lambda client: client.create_commit_comment(REPO, "0123456789abcdef", "x")),
    ("POST", lambda client: client.minimize_comment("IC_x")),
    ("PATCH", lambda client: client.request("PATCH", f"/repos/{REPO}/issues/3")),
    ("POST", lambda client: client.request_json("POST", f"/repos/{REPO}/issues")),
])
def test_a_2xx_html_body_is_an_infrastructure_error_not_a_crash(
        github: FakeGitHub, method: str, call: Any) -> None:
    github.script(method, r".*", 200, HTML_PAGE, headers={"Content-Type": "text/html"})
    with pytest.raises(GitHubUnavailable) as raised:
        call(client_for(github, []))
    assert raised.value.exit_code == EXIT_INFRA
    assert f"GitHub answered {method} /" in raised.value.message
    assert "with HTTP 200 and a text/html body that is not JSON" in raised.value.message


@pytest.mark.parametrize(("body", "found"), [
    ({"message": "an object"}, "a JSON object where a JSON array was expected"),
    ("a string", "a JSON string where a JSON array was expected"),
])
def test_a_listing_that_is_not_a_json_array_is_an_infrastructure_error(
        github: FakeGitHub, body: Any, found: str) -> None:
    github.script("GET", r".*", 200, body)
    with pytest.raises(GitHubUnavailable, match=found):
        client_for(github, []).list_issue_comments(REPO, 7)


def test_a_created_comment_that_is_a_json_array_is_an_infrastructure_error(
        github: FakeGitHub) -> None:
    github.script("POST", r".*", 201, [1, 2])
    with pytest.raises(GitHubUnavailable, match="a JSON array where a JSON object was expected"):
        client_for(github, []).create_issue_comment(REPO, 7, "x")


def test_a_redirect_to_another_host_is_not_followed(github: FakeGitHub) -> None:
    elsewhere = FakeGitHub(TOKEN).start()
    try:
        github.script("GET", r".*", 302, {"message": "Found"},
                      headers={"Location": f"{elsewhere.base_url}/repos/{REPO}/issues/7/comments"})
        with pytest.raises(GitHubUnavailable) as raised:
            client_for(github, []).list_issue_comments(REPO, 7)
        assert elsewhere.requests == []
        assert raised.value.exit_code == EXIT_INFRA
        assert raised.value.message.startswith(
            f"GitHub's 302 redirect for GET /repos/{REPO}/issues/7/comments points to "
            f"{elsewhere.host_url}, not to the GitHub API at {github.host_url}")
    finally:
        elsewhere.stop()


def test_a_redirect_within_the_api_repeats_the_request_there(github: FakeGitHub) -> None:
    # GitHub answers 301 for a renamed repository and 307 to repeat a request verbatim
    github.script("POST", r"/repos/octo/old-name/issues/7/comments", 307, {"message": "moved"},
                  headers={"Location": f"/repos/{REPO}/issues/7/comments"})
    client_for(github, []).create_issue_comment("octo/old-name", 7, "hello")
    assert [(r.method, r.path, r.body) for r in github.requests] == [
        ("POST", "/repos/octo/old-name/issues/7/comments", {"body": "hello"}),
        ("POST", f"/repos/{REPO}/issues/7/comments", {"body": "hello"})]
    assert github.requests[-1].headers["authorization"] == f"Bearer {TOKEN}"
    assert github.bodies(7) == ["hello"]


def test_endless_redirects_within_the_api_stop(github: FakeGitHub) -> None:
    github.script("GET", r".*", 301, {"message": "Moved"},
                  headers={"Location": f"/repos/{REPO}/issues/7/comments"}, times=50)
    with pytest.raises(GitHubUnavailable, match="more than 5 redirects in a row"):
        client_for(github, []).list_issue_comments(REPO, 7)


@pytest.mark.parametrize(("permission", "call", "asked", "not_asked"), [
    ("pull-requests: write", lambda c: c.create_issue_comment(REPO, 7, "x"),
     "      pull-requests: write\n      contents: read\n", "issues: write"),
    ("pull-requests: write", lambda c: c.create_commit_comment(REPO, "0123456789abcdef", "x"),
     "    permissions:\n      contents: write\n", "pull-requests"),
    ("issues: write", lambda c: c.request("POST", f"/repos/{REPO}/issues"),
     "      issues: write\n      contents: read\n", "pull-requests"),
])
def test_403_asks_for_the_permission_the_caller_needs(
        github: FakeGitHub, permission: str, call: Any, asked: str, not_asked: str) -> None:
    github.script("POST", r".*", 403, {"message": "Resource not accessible by integration"})
    client = GitHubClient(TOKEN, github.base_url, sleep=[].append, permission=permission)
    with pytest.raises(GitHubRequestError) as raised:
        call(client)
    assert asked in raised.value.message
    assert not_asked not in raised.value.message
