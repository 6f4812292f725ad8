"""guard_output: nothing shipml prints can be a workflow command; the Platform's own commands can."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipml.ci import ActPlatform, GitHubPlatform, JenkinsPlatform, LocalPlatform, guard_output, neutralize
from tests.ci._commands import Command, runner_lines, workflow_commands

REPO = Path(__file__).resolve().parents[2]

#: values a user or a pull request controls, as shipml might echo them in a message
HOSTILE = [
    "latency.provider 'cpu\n::warning::forged warning' is not a provider",
    "title\n::add-mask::shipml",
    "x\r::add-mask::carriage return alone ends a line for the runner",
    "x\r\n  \t::error file=a.py,line=1::indented",
    "\u2003::notice::after a unicode space",
    "inline ##[add-mask]legacy form anywhere in a line",
    "::stop-commands::pause\nnow everything is swallowed",
    "a\n::set-output name=status::pass",
]


@contextlib.contextmanager
def captured() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    # In the test body: pytest's own capture puts its streams back between a fixture and the test.
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        yield out, err


@pytest.mark.parametrize("payload", HOSTILE)
def test_no_printed_line_is_a_command(payload: str) -> None:
    assert workflow_commands(payload), "the payload must be a command without the guard"
    with captured() as (out, err), guard_output(GitHubPlatform({})):
        print(f"shipml latency: {payload}")
        print(payload)
        print(payload, file=sys.stderr)
        sys.stdout.write(payload)  # an open line at the end, written when the guard ends
    for log in (out.getvalue(), err.getvalue()):
        assert workflow_commands(log) == []
    # Nothing but invisible breaks was added: the text reads as it was printed.
    assert out.getvalue().replace("\u200b", "") == f"shipml latency: {payload}\n{payload}\n{payload}"


def test_platform_commands_pass_with_their_values_escaped() -> None:
    platform = GitHubPlatform({})
    with captured() as (out, _), guard_output(platform):
        print("about to annotate ", end="")  # a line left open must not swallow the command
        platform.annotate("warning", "p95 over budget\n::add-mask::shipml 100%", file="models/a,b:c.onnx",
                          line=3, title="latency: batch 1, p95")
        print("::error::printed, not a command")
        platform.mask("two-line\nsecret")
        platform.annotate("error", HOSTILE[0])
    assert workflow_commands(out.getvalue()) == [
        Command("warning", {"file": "models/a,b:c.onnx", "line": "3", "title": "latency: batch 1, p95"},
                "p95 over budget\n::add-mask::shipml 100%"),
        Command("add-mask", {}, "two-line"),
        Command("add-mask", {}, "secret"),
        Command("error", {}, HOSTILE[0]),
    ]
    assert runner_lines(out.getvalue())[0] == "about to annotate "


def test_a_command_split_over_writes_and_flushes_is_still_caught() -> None:
    with captured() as (out, _), guard_output(GitHubPlatform({})):
        parts = ("  ", ":", ":add-mask::", "shipml\n", "text ##", "#", "[add-mask]x\n", "ok\r", "::x::y\n")
        for part in parts:
            sys.stdout.write(part)
            sys.stdout.flush()
    assert workflow_commands(out.getvalue()) == []
    assert out.getvalue().replace("\u200b", "") == "  ::add-mask::shipml\ntext ###[add-mask]x\nok\r::x::y\n"


def test_logging_handlers_made_before_the_guard_are_guarded_then_restored() -> None:
    logger = logging.getLogger("shipml.test_guard")
    with captured() as (_, err):
        handler = logging.StreamHandler(sys.stderr)
        logger.addHandler(handler)
        logger.propagate = False
        try:
            with guard_output(ActPlatform({})):
                logger.warning("provider %s", "cpu\n::add-mask::shipml")
            assert handler.stream is err
        finally:
            logger.removeHandler(handler)
    assert workflow_commands(err.getvalue()) == []
    assert "::add-mask::shipml" in err.getvalue().replace("\u200b", "")


@pytest.mark.parametrize("platform", [LocalPlatform({}), JenkinsPlatform({"JENKINS_URL": "x"})])
def test_platforms_that_read_no_commands_are_left_alone(platform: LocalPlatform) -> None:
    with captured() as (out, _), guard_output(platform):
        assert sys.stdout is out
        print("::warning::plain text on a terminal")
    assert out.getvalue() == "::warning::plain text on a terminal\n"


def test_nested_guards_wrap_once_and_the_streams_come_back() -> None:
    with captured() as (out, err):
        with guard_output(GitHubPlatform({})):
            guarded = sys.stdout
            assert guarded is not out
            with guard_output(GitHubPlatform({})):
                assert sys.stdout is guarded
            assert sys.stdout is guarded
        assert (sys.stdout, sys.stderr) == (out, err)


def test_neutralize_keeps_line_breaks() -> None:
    assert neutralize("a\r\n::b::c\r##[d]") == "a\r\n\u200b::b::c\r##\u200b[d]"


def test_guard_from_the_environment_in_a_real_process() -> None:
    # The process's real stdout/stderr (file descriptors the runner reads), platform detected.
    script = textwrap.dedent("""
        import logging, sys
        from shipml.ci import detect, guard_output
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        with guard_output():
            value = sys.argv[1]
            print(f"shipml report: title {value}")
            logging.getLogger("shipml").error("latency.provider %s", value)
            detect().annotate("notice", value, title=value)
    """)
    payload = "t\n::add-mask::shipml\r::warning::x ##[error]y"
    env = {**os.environ, "GITHUB_ACTIONS": "true", "PYTHONPATH": str(REPO / "scripts")}
    env.pop("SHIPML_CI", None)
    env.pop("ACT", None)
    completed = subprocess.run([sys.executable, "-c", script, payload], env=env, capture_output=True,
                               text=True, check=True)
    assert workflow_commands(completed.stderr) == []
    assert workflow_commands(completed.stdout) == [Command("notice", {"title": payload}, payload)]
