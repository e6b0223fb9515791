# Sourced by scripts/docker-*.sh: which docker client to use and which base image to build on.
# shellcheck shell=bash

# The client that matches Debian's engine (docker.io) when present, else whatever is on PATH.
DOCKER="${DOCKER:-$(command -v /usr/bin/docker || command -v docker || echo docker)}"
OFFICIAL_BASE=python:3.11-slim-bookworm
STANDIN_BASE="${BASE_STANDIN:-local/python:3.11-slim-bookworm}"

# BASE_IMAGE if set; else the official image if the engine already has it; else the debootstrapped
# stand-in (built once by scripts/docker-base-image.sh). Never pulls on its own: this machine has no
# registry, and a release build names its base explicitly (BASE_IMAGE=python:3.11-slim-bookworm@sha256:...).
resolve_base_image() {
  if [ -n "${BASE_IMAGE:-}" ]; then echo "$BASE_IMAGE"; return 0; fi
  if "$DOCKER" image inspect "$OFFICIAL_BASE" >/dev/null 2>&1; then echo "$OFFICIAL_BASE"; return 0; fi
  echo "docker: $OFFICIAL_BASE is not here; using the stand-in $STANDIN_BASE" >&2
  "$(dirname "${BASH_SOURCE[0]}")/docker-base-image.sh" "$STANDIN_BASE"
}
