#!/usr/bin/env bash
# Build a stand-in for the official python:3.11-slim-bookworm base image, once, from Debian packages.
#
# This machine reaches Debian's archive and PyPI but no container registry, so the Dockerfile's default
# BASE_IMAGE cannot be pulled. A debootstrapped bookworm with Debian's python3 (3.11) is the closest
# thing: same Debian release, same Python minor version. Cached by tag: a second run does nothing.
#
#   scripts/docker-base-image.sh [TAG]        (default local/python:3.11-slim-bookworm; prints the tag)
set -euo pipefail

TAG="${1:-${BASE_STANDIN:-local/python:3.11-slim-bookworm}}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DOCKER="${DOCKER:-$(command -v /usr/bin/docker || command -v docker || echo docker)}"

if "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then echo "$TAG"; exit 0; fi

if ! command -v debootstrap >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
    debootstrap >/dev/null
fi

ROOTFS="$(mktemp -d /tmp/modelberth-rootfs.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT
echo "docker-base-image: debootstrapping bookworm into $ROOTFS (a few minutes, once)" >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$ROOTFS" "$MIRROR" \
  >"$ROOTFS.log" 2>&1 || { tail -30 "$ROOTFS.log" >&2; rm -f "$ROOTFS.log"; exit 1; }
rm -f "$ROOTFS.log"

# Slim it the way the official -slim images are slimmed: no docs, man pages, locales or apt lists.
rm -rf "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
  "$ROOTFS"/usr/share/locale/* "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
  "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/log/*.log "$ROOTFS"/tmp/* 2>/dev/null || true
# The official image has its interpreter at /usr/local/bin/python3 (and `python`); mirror that path.
ln -sf /usr/bin/python3 "$ROOTFS/usr/local/bin/python3"
ln -sf /usr/bin/python3 "$ROOTFS/usr/local/bin/python"

tar --numeric-owner -C "$ROOTFS" -c . | "$DOCKER" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --message "stand-in for python:3.11-slim-bookworm (debootstrap minbase + Debian python3)" \
  - "$TAG" >/dev/null
echo "$TAG"
