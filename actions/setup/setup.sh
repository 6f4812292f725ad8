#!/usr/bin/env bash
# Install shipml from this action's own checkout into a virtual environment, once per job.
#
#   setup.sh plan      resolve the interpreter, the venv path and the cache key; say whether the
#                      venv on disk is already ready (then the cache restore can be skipped)
#   setup.sh install   create the venv and pip-install shipml[EXTRAS], unless the stamp file in
#                      the venv already holds the same key, in which case pip does not run at all
#
# Stage actions run this script directly ("$GITHUB_ACTION_PATH/../setup/setup.sh"): a composite
# action cannot `uses:` a sibling local action portably (`./` means the caller's workspace, and the
# ref the caller pinned is not available to `uses:`), so every action that needs shipml carries the
# same plan -> cache restore -> install -> cache save steps around this one script.
#
# Inputs, all from the environment (composite actions get no INPUT_* variables):
#   SHIPML_SETUP_EXTRAS  comma-separated extras, e.g. "validate" ("" = none: optimize, latency and report need no extra)
#   SHIPML_SETUP_VENV    where the venv goes (default: $RUNNER_TEMP/shipml-venv-<extras>)
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

extras="${SHIPML_SETUP_EXTRAS:-}"
extras="${extras// /}"
case "${SHIPML_SETUP_ADD_TO_PATH:-false}" in
  true | false) ;;
  *) die 2 "input add-to-path=$(quote "$SHIPML_SETUP_ADD_TO_PATH") must be true or false" ;;
esac
if ! [[ "$extras" =~ ^([a-z0-9][a-z0-9_-]*(,[a-z0-9][a-z0-9_-]*)*)?$ ]]; then
  die 2 "input extras=$(quote "$SHIPML_SETUP_EXTRAS") is not a comma-separated list of extras (e.g. validate)"
fi

python_in="${SHIPML_SETUP_PYTHON:-python3}"
if ! interpreter="$(command -v -- "$python_in")"; then
  die 2 "python $(quote "$python_in") not found; set the python-version input or put python3 on PATH"
fi
python_version="$("$interpreter" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')" \
  || die 2 "python $(quote "$interpreter") does not run"

venv="${SHIPML_SETUP_VENV:-}"
if [ -z "$venv" ]; then
  venv="${RUNNER_TEMP:-${TMPDIR:-/tmp}}/shipml-venv-${extras:-base}"
  venv="${venv//,/-}"
fi
if [[ "$venv" == *$'\n'* ]]; then
  die 2 "input venv-path=$(quote "$venv") contains a newline"
fi
case "$venv" in
  /*) ;;
  *) venv="$PWD/$venv" ;;
esac

# The key changes whenever anything that decides the venv's content changes: the package source
# (version and code), this script, the extras, the interpreter and the machine.
source_hash="$(
  cd "$SOURCE_ROOT" &&
  { find scripts/shipml -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | LC_ALL=C sort -z |
      xargs -0 sha256sum; sha256sum pyproject.toml actions/setup/setup.sh; } | sha256sum | cut -c1-16
)"
shipml_version="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$SOURCE_ROOT/pyproject.toml" | head -n1)"
os_name="${RUNNER_OS:-$(uname -s)}"
arch="${RUNNER_ARCH:-$(uname -m)}"
key="shipml-${shipml_version}-${source_hash}-${extras:-base}-py${python_version}-${os_name}-${arch}"

venv_ready() {
  [ -f "$venv/$STAMP_NAME" ] && [ "$(cat "$venv/$STAMP_NAME")" = "$key" ] &&
    [ -x "$venv/bin/shipml" ] && "$venv/bin/python" -c '' 2>/dev/null
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
      "$interpreter" -m venv -- "$venv" || die 3 "could not create a venv at $venv"
      # Build from a copy so that the action's checkout is never written to (build/, *.egg-info).
      staging="$(mktemp -d)"
      trap 'rm -rf -- "$staging"' EXIT
      cp -R -- "$SOURCE_ROOT/pyproject.toml" "$SOURCE_ROOT/README.md" "$staging/"
      mkdir -p "$staging/scripts"
      cp -R -- "$SOURCE_ROOT/scripts/shipml" "$staging/scripts/"
      requirement="$staging"
      [ -z "$extras" ] || requirement="$staging[$extras]"
      "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off \
        --quiet "$requirement" || die 3 "pip could not install shipml[${extras}]; see the log above"
      "$venv/bin/shipml" --version >/dev/null || die 3 "shipml was installed but does not run"
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
