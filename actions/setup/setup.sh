#!/usr/bin/env bash
# Install shipml from this action's own checkout into a virtual environment, once per job.
#
#   setup.sh plan      resolve the interpreter, the venv path and the key; say whether the venv on
#                      disk is already ready (for a workflow that caches the venv itself)
#   setup.sh install   create the venv and pip-install shipml[EXTRAS], unless the stamp file in
#                      the venv already holds the same key, in which case pip does not run at all
#
# Every action that needs shipml runs this script as its one setup step ("--- shipml setup ---" in
# each action.yml; a composite action cannot `uses:` a sibling local action portably). The actions
# carry no third-party `uses:` step: act (and GitHub's runner) fetch every `uses:` of a composite
# action before any `if:` is evaluated, so an offline act run fails on an action it would skip.
#
# Inputs, all from the environment (composite actions get no INPUT_* variables):
#   SHIPML_SETUP_EXTRAS  comma-separated extras, e.g. "validate" ("" = none: optimize, latency and report need no extra)
#   SHIPML_SETUP_VENV    where the venv goes (default: $RUNNER_TEMP/shipml-venv-<extras>; under act
#                        ${XDG_CACHE_HOME:-$HOME/.cache}/shipml/act-venv-<version>-<extras>, reused across runs)
#   SHIPML_SETUP_PYTHON_VERSION  e.g. 3.11: the runner's tool cache or pythonX.Y on PATH
#   SHIPML_SETUP_PYTHON  the interpreter that creates the venv (default: python3 on PATH)
#   SHIPML_SETUP_ADD_TO_PATH  "true": put `shipml` (and only it, not the venv's python) on the
#                        PATH of later steps through $GITHUB_PATH
# Outputs (to $GITHUB_OUTPUT with a random heredoc delimiter, and echoed to the log):
#   plan:    venv, key, ready
#   install: python, shipml, venv, key, reused
# Exit codes: 0 ok, 2 bad input, 3 the install failed (PyPI unreachable and the like).
set -euo pipefail

SOURCE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly SOURCE_ROOT
readonly STAMP_NAME=".shipml-setup-key"
# Characters a venv path may hold. pip writes a /bin/sh launcher instead of a plain shebang for a
# path with spaces or over 127 characters, and that launcher (like any later `run:` line) must not
# be able to expand `$(...)`, backticks or quotes from the path.
readonly SAFE_PATH='^/[A-Za-z0-9._+/-]*$'
readonly SAFE_PATH_HELP="letters, digits and . _ + - /"

quote() {  # quote VALUE: for messages; a hostile value cannot start a `::command::` line
  printf '%q' "$1"
}

die() {  # die CODE MESSAGE
  echo "shipml setup: $2" >&2
  exit "$1"
}

emit() {  # emit NAME VALUE: a step output, with a delimiter no value can forge
  local name="$1" value="$2" delimiter
  printf '%s=%q\n' "$name" "$value"  # %q: a value never starts a line of its own in the log
  [ -n "${GITHUB_OUTPUT:-}" ] || return 0
  delimiter="ghadelimiter_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  printf '%s<<%s\n%s\n%s\n' "$name" "$delimiter" "$value" "$delimiter" >>"$GITHUB_OUTPUT"
}

under_act() {
  [ "${ACT:-}" = true ]
}

extras="${SHIPML_SETUP_EXTRAS:-}"
extras="${extras// /}"
case "${SHIPML_SETUP_ADD_TO_PATH:-false}" in
  true | false) ;;
  *) die 2 "input add-to-path=$(quote "$SHIPML_SETUP_ADD_TO_PATH") must be true or false" ;;
esac
if ! [[ "$extras" =~ ^([a-z0-9][a-z0-9_-]*(,[a-z0-9][a-z0-9_-]*)*)?$ ]]; then
  die 2 "input extras=$(quote "$SHIPML_SETUP_EXTRAS") is not a comma-separated list of extras (e.g. validate)"
fi

# The interpreter: an explicit one, else the requested version from the runner's tool cache
# (GitHub-hosted runners carry several) or pythonX.Y on PATH, else python3 on PATH.
find_python_version() {  # find_python_version X.Y[.Z]: print the interpreter's path or fail
  local want="$1" minor candidate found=""
  minor="$(printf '%s' "$want" | cut -d. -f1-2)"
  if [ -n "${RUNNER_TOOL_CACHE:-}" ] && [ -d "$RUNNER_TOOL_CACHE/Python" ]; then
    for candidate in "$RUNNER_TOOL_CACHE"/Python/"$want"*/*/bin/python3; do
      [ -x "$candidate" ] && found="$candidate"
    done
  fi
  if [ -z "$found" ]; then
    found="$(command -v -- "python$minor" 2>/dev/null)" || return 1
  fi
  "$found" -I -c 'import sys; v = "%d.%d.%d" % sys.version_info[:3]; w = sys.argv[1];
sys.exit(0 if v == w or v.startswith(w + ".") else 1)' "$want" || return 1
  printf '%s\n' "$found"
}

python_version_in="${SHIPML_SETUP_PYTHON_VERSION:-}"
python_in="${SHIPML_SETUP_PYTHON:-}"
if [ -z "$python_in" ] && [ -n "$python_version_in" ]; then
  if ! [[ "$python_version_in" =~ ^3\.[0-9]+(\.[0-9]+)?$ ]]; then
    die 2 "input python-version=$(quote "$python_version_in") is not a Python version such as 3.11 or 3.12.4"
  fi
  if ! python_in="$(find_python_version "$python_version_in")"; then
    if under_act; then
      echo "shipml setup: python-version $python_version_in is not on this machine; under act python3 on PATH is used"
      python_in=""
    else
      die 2 "input python-version=$python_version_in: no such Python in \$RUNNER_TOOL_CACHE or on PATH. Set it up before shipml and leave python-version empty:
  - uses: actions/setup-python@<full sha> # v5
    with:
      python-version: \"$python_version_in\""
    fi
  fi
fi
python_in="${python_in:-python3}"
if ! interpreter="$(command -v -- "$python_in")"; then
  die 2 "python $(quote "$python_in") not found; set the python-version input or put python3 on PATH"
fi
python_version="$("$interpreter" -I -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')" \
  || die 2 "python $(quote "$interpreter") does not run"
shipml_version="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$SOURCE_ROOT/pyproject.toml" | head -n1)"

venv="${SHIPML_SETUP_VENV:-}"
venv_from="input venv-path"
if [ -z "$venv" ]; then
  if under_act; then
    # act gives every run a new RUNNER_TEMP: keep one venv per version and extras across runs.
    venv="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/shipml/act-venv-${shipml_version}-${extras:-base}"
    venv_from="the act venv path (from XDG_CACHE_HOME or HOME)"
  else
    venv="${RUNNER_TEMP:-${TMPDIR:-/tmp}}/shipml-venv-${extras:-base}"
    venv_from="the default venv path (from RUNNER_TEMP)"
  fi
  venv="${venv//,/-}"
fi
if [[ "$venv" == *$'\n'* ]]; then
  die 2 "$venv_from=$(quote "$venv") contains a newline"
fi
case "$venv" in
  /*) ;;
  *) venv="$PWD/$venv" ;;
esac
if ! [[ "$venv" =~ $SAFE_PATH ]]; then
  die 2 "$venv_from=$(quote "$venv") holds a character outside $SAFE_PATH_HELP; give a plain path such as \${{ runner.temp }}/shipml-venv"
fi

# The key changes whenever anything that decides the venv's content changes: the package source
# (version and code), this script, the extras, the interpreter and the machine.
source_hash="$(
  cd "$SOURCE_ROOT" &&
  { find scripts/shipml -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | LC_ALL=C sort -z |
      xargs -0 sha256sum; sha256sum pyproject.toml actions/setup/setup.sh; } | sha256sum | cut -c1-16
)"
os_name="${RUNNER_OS:-$(uname -s)}"
arch="${RUNNER_ARCH:-$(uname -m)}"
key="shipml-${shipml_version}-${source_hash}-${extras:-base}-py${python_version}-${os_name}-${arch}"

venv_ready() {
  # Nothing in the venv is executed but its python binary (never a generated launcher script).
  [ -f "$venv/$STAMP_NAME" ] && [ "$(cat "$venv/$STAMP_NAME")" = "$key" ] &&
    [ -f "$venv/bin/shipml" ] && "$venv/bin/python" -c '' 2>/dev/null
}

case "${1:-}" in
  plan)
    emit venv "$venv"
    emit key "$key"
    if venv_ready; then emit ready true; else emit ready false; fi
    ;;
  install)
    if venv_ready; then
      echo "shipml setup: reusing the cached venv at $venv (key $key); pip not run"
      emit reused true
    else
      echo "shipml setup: installing shipml[${extras}] into $venv with Python $python_version"
      # Replace only what is ours to replace: an old venv, or nothing. A venv-path pointing at a
      # folder with other content (the workspace, $HOME) is refused, never emptied.
      if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ] && [ -n "$(ls -A -- "$venv" 2>/dev/null)" ]; then
        die 2 "venv-path $(quote "$venv") exists and is not a virtual environment; give a new or empty folder"
      fi
      rm -rf -- "$venv"
      mkdir -p -- "$(dirname -- "$venv")"
      "$interpreter" -I -m venv -- "$venv" || die 3 "could not create a venv at $venv"
      # -I everywhere: the working directory is the pull request's checkout, and `python -m X`
      # would otherwise import a folder named X from it.
      # Build from a copy so that the action's checkout is never written to (build/, *.egg-info).
      staging="$(mktemp -d)"
      trap 'rm -rf -- "$staging"' EXIT
      cp -R -- "$SOURCE_ROOT/pyproject.toml" "$SOURCE_ROOT/README.md" "$staging/"
      mkdir -p "$staging/scripts"
      cp -R -- "$SOURCE_ROOT/scripts/shipml" "$staging/scripts/"
      requirement="$staging"
      [ -z "$extras" ] || requirement="$staging[$extras]"
      "$venv/bin/python" -I -m pip install --disable-pip-version-check --no-input --progress-bar off \
        --quiet "$requirement" || die 3 "pip could not install shipml[${extras}]; see the log above"
      "$venv/bin/python" -I -m shipml --version >/dev/null || die 3 "shipml was installed but does not run"
      printf '%s\n' "$key" >"$venv/$STAMP_NAME"
      emit reused false
    fi
    if [ "${SHIPML_SETUP_ADD_TO_PATH:-false}" = true ]; then
      # A folder holding only the console script, so the user's `python` stays their own.
      mkdir -p "$venv/shipml-path"
      ln -sf "$venv/bin/shipml" "$venv/shipml-path/shipml"
      [ -z "${GITHUB_PATH:-}" ] || printf '%s\n' "$venv/shipml-path" >>"$GITHUB_PATH"
      echo "shipml setup: shipml is on PATH for the next steps"
    fi
    emit python "$venv/bin/python"
    emit shipml "$venv/bin/shipml"
    emit venv "$venv"
    emit key "$key"
    ;;
  *)
    die 2 "usage: setup.sh plan|install"
    ;;
esac
