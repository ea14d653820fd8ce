#!/bin/sh
# Build an image's virtual environment ($VENV, default /opt/venv) from the project in the current
# directory, in two steps, so that the dependencies are a layer that changes only with
# pyproject.toml and docker/constraints.txt (every version pinned; `make lock` writes it):
#
#   sh docker/install-venv.sh dependencies [requirements.py options]   # e.g. --extra gpu
#   sh docker/install-venv.sh project                                   # the project, no deps
#
# Every image (api, trainer, api-gpu) is built with it, and `make check-deploy` runs it on this
# machine to install the api image's set. POSIX sh and python3 only: it runs in bare images.
set -eu
VENV=${VENV:-/opt/venv}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

step=${1:-}
[ $# -gt 0 ] && shift
case "$step" in
  dependencies)
    python3 -m venv "$VENV"
    python3 docker/requirements.py "$@" > "$VENV/requirements.txt"
    index=""
    case " $* " in
      *" --torch-cpu "*) index="--extra-index-url $TORCH_CPU_INDEX" ;;  # torch==X+cpu lives there
    esac
    # shellcheck disable=SC2086  # $index is zero or two words
    "$VENV/bin/pip" install --quiet $index -r "$VENV/requirements.txt" -c docker/constraints.txt
    ;;
  project)
    "$VENV/bin/pip" install --quiet --no-cache-dir --no-deps .
    ;;
  *)
    echo "usage: docker/install-venv.sh dependencies [requirements.py options] | project" >&2
    exit 2
    ;;
esac
