#!/usr/bin/env bash
# Install shipml from this action's own checkout into a virtual environment, once per job.
#
#   setup.sh plan      resolve the interpreter, the venv path and the key; say whether the venv on
#                      disk is already ready (for a workflow that caches the venv itself)
#   setup.sh install   create the venv and install shipml[EXTRAS] with uv (pip-installed from PyPI
#                      when it is not on PATH) or, when uv cannot be had or fails, pip; unless the
#                      stamp file in the venv already holds the same key: then nothing is installed
#
# Every action that needs shipml runs this script as its one setup step ("--- shipml setup ---" in
# each action.yml; a composite action cannot `uses:` a sibling local action portably). The actions
# carry no third-party `uses:` step: act (and GitHub's runner) fetch every `uses:` of a composite
# action before any `if:` is evaluated, so an offline act run fails on an action it would skip.
#
# Inputs, all from the environment (composite actions get no INPUT_* variables):
#   SHIPML_SETUP_EXTRAS  comma-separated extras, e.g. "validate" ("" = none: optimize, latency and report need no extra)
#   SHIPML_SETUP_VENV    where the venv goes (default: $RUNNER_TEMP/shipml-venv-<extras>; under act
#                        ${XDG_CACHE_HOME:-$HOME/.cache}/shipml/act-venv-<version>-<extras>-<source hash>, reused
#                        across runs; one unused for a week is removed by a later install)
#   SHIPML_SETUP_PYTHON_VERSION  e.g. 3.11: the runner's tool cache or pythonX.Y on PATH
#   SHIPML_SETUP_PYTHON  the interpreter that creates the venv (default: python3 on PATH)
#   SHIPML_SETUP_ADD_TO_PATH  "true": put `shipml` (and only it, not the venv's python) on the
#                        PATH of later steps through $GITHUB_PATH
#   SHIPML_SETUP_INSTALLER  auto (default: uv when it can be had, else pip), uv or pip
#   UV_CACHE_DIR, PIP_CACHE_DIR  the installers' caches, as the job's environment sets them; by
#                        default uv's and pip's own (~/.cache, or XDG_CACHE_HOME: reused wherever
#                        the home folder outlives the job, a self-hosted runner, act)
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
installer_in="${SHIPML_SETUP_INSTALLER:-auto}"
case "$installer_in" in
  auto | uv | pip) ;;
  *) die 2 "SHIPML_SETUP_INSTALLER=$(quote "$installer_in") must be auto, uv or pip" ;;
esac

# The version: setuptools-scm reads it from git, which a copy of the source to build from does not
# carry, so the build gets it as .git_archival.txt: GitHub's tarball of a release (what a runner
# downloads for `uses: OWNER/shipml@v1`) holds it filled in (export-subst, .gitattributes), a git
# checkout of the action (`uses: ./`) fills it in here the way `git archive` would.
archival() {  # print this source's .git_archival.txt, filled in; nothing when there is none
  local top=""
  if command -v git >/dev/null 2>&1; then
    top="$(git -C "$SOURCE_ROOT" rev-parse --show-toplevel 2>/dev/null)" || top=""
  fi
  if [ -n "$top" ] && [ "$(cd "$top" && pwd -P)" = "$(cd "$SOURCE_ROOT" && pwd -P)" ]; then
    # a git older than 2.32 leaves %(describe) as it is: no tag then, the commit still counts
    git -C "$SOURCE_ROOT" log -1 --format='node: %H%nnode-date: %cI%ndescribe-name: %(describe:tags=true,match=v[0-9]*)' |
      grep -v '%(describe' || true
  elif [ -f "$SOURCE_ROOT/.git_archival.txt" ]; then
    cat -- "$SOURCE_ROOT/.git_archival.txt"
  fi
}
archival_text="$(archival)"
# The release tag when this source is one (v1.2.0), else "dev": names the act venv and the key.
shipml_version="$(printf '%s\n' "$archival_text" | sed -n 's/^describe-name: \(v[0-9][0-9.]*\)$/\1/p' | head -n1)"
shipml_version="${shipml_version:-dev}"

# The key changes whenever anything that decides the venv's content changes: the package source
# (version and code), this script, the extras, the interpreter and the machine.
source_hash="$(
  cd "$SOURCE_ROOT" &&
  { find scripts/shipml -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | LC_ALL=C sort -z |
      xargs -0 sha256sum; sha256sum pyproject.toml actions/setup/setup.sh
    printf '%s\n' "$archival_text"; } | sha256sum | cut -c1-16
)"
venv="${SHIPML_SETUP_VENV:-}"
venv_from="input venv-path"
if [ -z "$venv" ]; then
  if under_act; then
    # act gives every run a new RUNNER_TEMP: keep one venv per source and extras across runs. The
    # source's hash is in the name, so that two runs of two checkouts at once (a clone on the side)
    # never reinstall the venv the other is running from.
    venv="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/shipml/act-venv-${shipml_version}-${extras:-base}-${source_hash:0:8}"
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

os_name="${RUNNER_OS:-$(uname -s)}"
arch="${RUNNER_ARCH:-$(uname -m)}"
key="shipml-${shipml_version}-${source_hash}-${extras:-base}-py${python_version}-${os_name}-${arch}"

pip_install() {  # pip_install ARGS...: pip of the venv, quiet, never prompting
  "$venv/bin/python" -I -m pip install --disable-pip-version-check --no-input --progress-bar off \
    --quiet "$@"
}

find_uv() {  # print a uv to install with: the one on PATH, else one pip installs from PyPI
  local found
  if found="$(command -v uv 2>/dev/null)" && "$found" --version >/dev/null 2>&1; then
    printf '%s\n' "$found"
    return 0
  fi
  # beside the build copy, so that the venv holds only shipml and what it needs
  pip_install --target "$staging/uv" uv >&2 || return 1
  [ -x "$staging/uv/bin/uv" ] || return 1
  printf '%s\n' "$staging/uv/bin/uv"
}

install_with_uv() {  # install_with_uv REQUIREMENT: 0 when uv installed it, 1 to fall back to pip
  [ "$installer_in" != pip ] || return 1
  local uv
  if ! uv="$(find_uv)"; then
    if [ "$installer_in" = uv ]; then
      die 3 "SHIPML_SETUP_INSTALLER=uv, but uv is not on PATH and pip could not install it (pip install uv)"
    fi
    echo "shipml setup: uv is not on PATH and pip could not install it; installing with pip"
    return 1
  fi
  # uv reads neither pip.conf nor PIP_* variables: hand it the index, links and CA bundle the
  # job gives pip (anything only pip.conf says is pip's fallback below)
  [ -z "${PIP_INDEX_URL:-}" ] || export UV_INDEX_URL="${UV_INDEX_URL:-$PIP_INDEX_URL}"
  [ -z "${PIP_EXTRA_INDEX_URL:-}" ] || export UV_EXTRA_INDEX_URL="${UV_EXTRA_INDEX_URL:-$PIP_EXTRA_INDEX_URL}"
  [ -z "${PIP_FIND_LINKS:-}" ] || export UV_FIND_LINKS="${UV_FIND_LINKS:-$PIP_FIND_LINKS}"
  [ -z "${PIP_CERT:-}" ] || export SSL_CERT_FILE="${SSL_CERT_FILE:-$PIP_CERT}"
  echo "shipml setup: installing with $("$uv" --version) (cache $("$uv" cache dir 2>/dev/null || echo '?'))"
  if "$uv" pip install --python "$venv/bin/python" --quiet "$1"; then
    return 0
  fi
  if [ "$installer_in" = uv ]; then
    die 3 "uv could not install shipml[${extras}]; see the log above"
  fi
  echo "shipml setup: uv could not install shipml[${extras}] (see above); installing with pip instead"
  return 1
}

install_with_pip() {  # install_with_pip REQUIREMENT
  echo "shipml setup: installing with pip $("$venv/bin/python" -I -m pip --version | cut -d' ' -f2)"
  pip_install "$1" || die 3 "pip could not install shipml[${extras}]; see the log above"
}

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
    # Two jobs of one source at once (act runs a workflow's jobs in parallel) install one at a
    # time; the second finds the venv ready. flock is util-linux's; without it, no lock.
    if command -v flock >/dev/null 2>&1; then
      mkdir -p -- "$(dirname -- "$venv")"
      exec 9>"$venv.lock"
      flock 9
    fi
    if venv_ready; then
      touch -- "$venv/$STAMP_NAME"  # last used: what pruning below goes by
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
      mkdir -p "$staging/source/scripts"
      cp -R -- "$SOURCE_ROOT/pyproject.toml" "$SOURCE_ROOT/README.md" "$staging/source/"
      # pyproject's license-files names it: setuptools refuses a missing one from 2027-02-18
      [ ! -f "$SOURCE_ROOT/LICENSE" ] || cp -- "$SOURCE_ROOT/LICENSE" "$staging/source/"
      [ -z "$archival_text" ] || printf '%s\n' "$archival_text" >"$staging/source/.git_archival.txt"
      cp -R -- "$SOURCE_ROOT/scripts/shipml" "$staging/source/scripts/"
      requirement="$staging/source"
      [ -z "$extras" ] || requirement="$staging/source[$extras]"
      install_with_uv "$requirement" || install_with_pip "$requirement"
      "$venv/bin/python" -I -m shipml --version >/dev/null || die 3 "shipml was installed but does not run"
      printf '%s\n' "$key" >"$venv/$STAMP_NAME"
      if under_act && [ -z "${SHIPML_SETUP_VENV:-}" ]; then
        # Venvs of earlier sources with the same extras, unused for a week, go.
        for old in "${venv%-*}"-????????; do
          [ "$old" != "$venv" ] && [ -f "$old/pyvenv.cfg" ] && [ -f "$old/$STAMP_NAME" ] || continue
          [ -n "$(find "$old/$STAMP_NAME" -mtime +7 2>/dev/null)" ] || continue
          echo "shipml setup: removing $old (unused for a week)"
          rm -rf -- "$old" "$old.lock"
        done
      fi
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
