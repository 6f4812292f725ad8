"""The README and the docs site stay true: README starts with the two commands, shows the exact act
commands, stays short and links only to files that exist; the generated reference pages list every
key, flag, input and output there is (tests/test_generated.py checks they are what the generator
writes); troubleshooting covers what users meet most; the site builds with ``--strict``."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shipml.cli import main
from shipml.commands.schema import reference_markdown
from shipml.generate import docs

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
MAX_README_LINES = 250
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")

#: the upload step of the workflow templates, which the quick start's act commands stand in for
UPLOAD_ARTIFACT = "actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02"

def documented(text: str) -> dict[str, tuple[set[str], set[str]]]:
    """Return, per action section (``## name`` with a ``uses:`` line) of an actions reference
    page, the input and output names its tables list."""
    found: dict[str, tuple[set[str], set[str]]] = {}
    for chunk in text.split("\n## ")[1:]:
        if "uses: " not in chunk:
            continue
        heading = chunk.split("\n", 1)[0].strip()
        inputs: set[str] = set()
        outputs: set[str] = set()
        table: set[str] | None = None
        for line in chunk.splitlines():
            if line.startswith("| input |"):
                table = inputs
            elif line.startswith("| output |"):
                table = outputs
            elif table is not None and line.startswith("| `"):
                table.add(line.split("`")[1])
        found[heading] = (inputs, outputs)
    return found


# --- README -------------------------------------------------------------------------------------


def test_the_readme_starts_with_the_two_commands() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert lines[:5] == [
        "# shipml", "", "```bash",
        "bash .ci/demo   # set everything up from a fresh clone and run the pipeline on the bundled example",
        "bash .ci/test   # set everything up and run lint, zizmor and the whole test suite (what CI runs)"]


def test_the_readme_shows_the_exact_act_commands() -> None:
    # tests/actions/test_act_quickstart.py runs the pull-request one as written
    text = README.read_text(encoding="utf-8")
    offline = ("  --local-repository OWNER/shipml@v1=$HOME/src/shipml \\\n"
               f"  --local-repository {UPLOAD_ARTIFACT}=$HOME/src/shipml/workflow-templates/act/"
               "upload-artifact")
    kept = '--env SHIPML_OUTPUT_DIR="$PWD/.shipml"'
    assert (f"act pull_request -e EVENT.json -P ubuntu-latest=-self-hosted {kept} \\\n"
            f"{offline}\n") in text
    assert (f"act push -e PUSH.json -P ubuntu-latest=-self-hosted {kept} \\\n{offline} \\\n"
            "  -s COSIGN_PRIVATE_KEY=\"$(cat cosign.key)\" -s COSIGN_PASSWORD") in text


def test_the_act_stand_in_is_for_the_upload_step_every_template_pins() -> None:
    pinned = {line.split("uses: ")[1].split()[0]
              for template in (REPO / "workflow-templates").glob("*.yml")
              for line in template.read_text(encoding="utf-8").splitlines()
              if "uses: actions/upload-artifact@" in line}
    assert pinned == {UPLOAD_ARTIFACT}
    assert (REPO / "workflow-templates" / "act" / "upload-artifact" / "action.yml").is_file()


def test_the_readme_is_short() -> None:
    count = len(README.read_text(encoding="utf-8").splitlines())
    assert count <= MAX_README_LINES, (
        f"README.md has {count} lines, at most {MAX_README_LINES}: move the detail to a page of docs/")


def test_the_readme_has_a_quick_start_per_platform() -> None:
    text = README.read_text(encoding="utf-8")
    for heading in ("### GitHub: every pull request", "### GitHub: the release", "### Jenkins",
                    "### act: ", "### On a laptop"):
        assert heading in text, heading


def links(path: Path) -> list[str]:
    """Return every link target of markdown file ``path`` outside code spans and fences."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return _LINK.findall(text)


@pytest.mark.parametrize("page", ["README.md", "CONTRIBUTING.md", "bench/README.md",
                                  *(f"actions/{d.name}/README.md"
                                    for d in sorted((REPO / "actions").iterdir())
                                    if (d / "action.yml").is_file())])
def test_every_link_of_the_top_level_pages_resolves(page: str) -> None:
    source = REPO / page
    broken = []
    for target in links(source):
        if re.match(r"^[a-z]+:", target):
            continue  # a URL: not checked offline
        path, _, anchor = target.partition("#")
        resolved = (source.parent / path).resolve() if path else source
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(target)
    assert broken == [], f"{page} links to what does not exist: {broken}"


def anchors(page: Path) -> set[str]:
    """Return the anchors of the headings of ``page`` as MkDocs (and GitHub) make them."""
    found = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            words = re.sub(r"[^\w\s-]", "", line.lstrip("#").strip().lower())
            found.add(re.sub(r"[-\s]+", "-", words).strip("-"))
    return found


def test_a_broken_readme_link_is_caught(tmp_path: Path) -> None:
    page = tmp_path / "README.md"
    page.write_text("[a](docs/nope.md) `[b](not-a-link.md)` [c](https://example.com)\n")
    assert links(page) == ["docs/nope.md", "https://example.com"]


def test_the_root_action_section_names_every_input_and_output() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split(docs.ROOT_BEGIN, 1)[1].split(docs.ROOT_END, 1)[0]
    action = yaml.safe_load((REPO / "action.yml").read_text(encoding="utf-8"))
    for name in [*(action.get("inputs") or {}), *(action.get("outputs") or {})]:
        assert f"`{name}`" in section, name


# --- the generated reference pages --------------------------------------------------------------


def test_the_configuration_reference_is_what_shipml_schema_markdown_prints(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--markdown"]) == 0
    printed = capsys.readouterr().out
    assert printed == reference_markdown()
    assert printed in (DOCS / "reference" / "configuration.md").read_text(encoding="utf-8")


def test_the_reference_lists_every_section_and_nested_key() -> None:
    reference = reference_markdown({"properties": {"demo": {
        "description": "a | section", "properties": {
            "when": {"enum": ["a", "b"], "default": "a", "description": "pick"},
            "steps": {"type": "array", "default": [], "items": {"oneOf": [
                {"type": "object", "properties": {"weight": {"type": "integer"}}},
                {"type": "string"}]}},
            "target": {"type": "object", "properties": {"port": {"type": ["integer", "null"],
                                                                  "default": None}}}}}}})
    assert reference == (
        "## `demo`\n\na \\| section\n\n| key | type | default | description |\n|---|---|---|---|\n"
        "| `when` | `\"a\"` \\| `\"b\"` | `\"a\"` | pick |\n"
        "| `steps` | list of objects | `[]` |  |\n"
        "| `steps[].weight` | integer |  |  |\n"
        "| `target.port` | integer or null | `null` |  |\n")


def test_schema_markdown_to_a_folder_is_bad_input(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--markdown", "--output", str(tmp_path)]) == 2
    assert f"--output: {tmp_path} is a folder; name the file to write, e.g. " \
           f"{tmp_path / 'shipml.schema.md'}" in capsys.readouterr().err
    assert main(["schema", "--markdown", "--output", str(tmp_path / "ref.md")]) == 0
    assert (tmp_path / "ref.md").read_text() == reference_markdown()


def test_every_input_and_output_is_documented_and_every_documented_one_exists() -> None:
    listed = documented((DOCS / "reference" / "actions.md").read_text(encoding="utf-8"))
    for action in docs.all_actions(REPO):
        heading = action.folder or "all-in-one"
        assert heading in listed, f"the actions reference documents no {action.uses}"
        inputs, outputs = listed.pop(heading)
        assert inputs == set(action.inputs), f"{action.uses} inputs differ"
        assert outputs == set(action.outputs), f"{action.uses} outputs differ"
        if action.folder:
            readme = documented("\n## x\nuses: \n" + (REPO / "actions" / action.folder / "README.md")
                                .read_text(encoding="utf-8"))["x"]
            assert readme == (set(action.inputs), set(action.outputs)), action.folder
    assert not listed, f"the actions reference documents actions that do not exist: {sorted(listed)}"


def test_a_stale_actions_reference_is_caught() -> None:
    text = (DOCS / "reference" / "actions.md").read_text(encoding="utf-8")
    stale = text.replace("| `digest` |", "| `digests` |", 1)
    assert stale != text
    assert documented(stale) != documented(text)


def test_the_cli_reference_lists_every_command_and_flag() -> None:
    page = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    for name, _summary, parser in docs.commands():
        assert f"## `shipml {name}`" in page, name
        section = page.split(f"## `shipml {name}`", 1)[1].split("\n## ", 1)[0]
        for action in parser._actions:
            if action.option_strings and not isinstance(action, argparse._HelpAction):
                assert f"`{action.option_strings[-1]}" in section, (name, action.option_strings)


def test_the_cli_reference_names_each_option_s_variable_and_key() -> None:
    page = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    canary = page.split("## `shipml canary`", 1)[1].split("\n## ", 1)[0]
    assert "| `--steps LIST` | `SHIPML_CANARY_STEPS` | `canary.steps` |" in canary
    assert "| `--require-gates` / `--no-require-gates` | `SHIPML_CANARY_REQUIRE_GATES` |" in canary


# --- the site -----------------------------------------------------------------------------------


def test_troubleshooting_covers_what_users_meet_most() -> None:
    section = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    for topic in ("fork", "permissions:", "packages: write", "docker login", "Docker Engine",
                  "fetch-depth: 0", "git fetch"):
        assert topic in section, topic


def test_there_is_a_guide_per_stage() -> None:
    from shipml import stages

    for name in stages.names():
        assert (DOCS / "guide" / f"{name}.md").is_file(), name
    assert (DOCS / "guide" / "run.md").is_file()


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False)
    assert done.returncode == 0, done.stderr[-3000:]
