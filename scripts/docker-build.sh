#!/usr/bin/env bash
# Build the service images from docker/Dockerfile, one --target (and the matching SERVICE build arg) each.
#
#   scripts/docker-build.sh [TARGET...]      default: auth inference ui trainer
#
# Environment:
#   BASE_IMAGE    base for every stage (default: python:3.11-slim-bookworm if the engine has it, else the
#                 debootstrapped stand-in from scripts/docker-base-image.sh; see docker-lib.sh)
#   IMAGE_PREFIX  image names are <prefix><target> (default modelberth-)
#   IMAGE_TAG     tag (default dev)
#   IMAGE_SOURCE  org.opencontainers.image.source (default: git remote "origin", else the project URL)
#   EXTRA_CA      a PEM bundle the builder stage trusts (default: the file pip's `cert` setting names,
#                 i.e. the host's bundle that already trusts a TLS-intercepting proxy); "none" to skip
#   REVISION      org.opencontainers.image.revision (default: git HEAD)
#   DOCKER_BUILDKIT=1 builds with BuildKit; unset, the classic builder is used (both are supported)
#
# Labels come from git (revision = HEAD, created = HEAD's commit time), so rebuilding one commit is a
# full cache hit. Prints "<image> <size MB>" per image.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/docker-lib.sh
BASE_IMAGE="$(resolve_base_image)"
IMAGE_PREFIX="${IMAGE_PREFIX:-modelberth-}"
IMAGE_TAG="${IMAGE_TAG:-dev}"
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(auth inference ui trainer)

VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)"
REVISION="${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
CREATED="$(git log -1 --format=%cI 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)"
SOURCE="${IMAGE_SOURCE:-$(git remote get-url origin 2>/dev/null || echo https://github.com/modelberth/modelberth)}"

# The optional extra CA for the builder stage only (the final stages never copy docker/certs).
CA_DEST=docker/certs/extra-ca.pem
EXTRA_CA="${EXTRA_CA:-${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}}"
if [ -n "$EXTRA_CA" ] && [ "$EXTRA_CA" != none ] && [ -s "$EXTRA_CA" ]; then
  if ! cmp -s "$EXTRA_CA" "$CA_DEST"; then cp "$EXTRA_CA" "$CA_DEST"; fi
else
  rm -f "$CA_DEST"
fi

LOG_DIR="${MODELBERTH_STATE_DIR:-.modelberth}/docker"
mkdir -p "$LOG_DIR"

for target in "${TARGETS[@]}"; do
  image="${IMAGE_PREFIX}${target}:${IMAGE_TAG}"
  start=$(date +%s)
  log="$LOG_DIR/build-$target.log"
  # The Dockerfile's venv and service stages are parametrised by SERVICE and the member's folder
  # (services/<target>, or <target>/ at the root like the trainer).
  member="services/$target"
  [ -d "$member" ] || member="$target"
  if ! "$DOCKER" build --network host -f docker/Dockerfile --target "$target" -t "$image" \
    --build-arg SERVICE="$target" --build-arg MEMBER="$member" --build-arg BASE_IMAGE="$BASE_IMAGE" \
    --build-arg VERSION="$VERSION" --build-arg REVISION="$REVISION" --build-arg CREATED="$CREATED" \
    --build-arg SOURCE="$SOURCE" . >"$log" 2>&1; then
    echo "docker-build: $target failed; last lines of $log:" >&2
    tail -40 "$log" >&2
    exit 1
  fi
  size=$("$DOCKER" image inspect --format '{{.Size}}' "$image")
  echo "$image $((size / 1000000)) MB (${target} built in $(( $(date +%s) - start )) s)"
done
