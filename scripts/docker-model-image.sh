#!/usr/bin/env bash
# Train a model in the trainer image and package the result as a model image.
#
#   scripts/docker-model-image.sh [--data CSV] [--target COL] [--dataset NAME] [--name NAME]
#                                 [--time-budget S] [-- more `modelberth train` flags]
#   scripts/docker-model-image.sh --from MODEL_ROOT --name NAME [--version V]   (package, no training)
#
# The packaged version is the model's champion (a store written before aliases: its latest); a training the
# promotion gate refuses (exit 3, e.g. a standing leak warning) builds no image.
#
# Training runs as uid 10001 in modelberth-trainer:$IMAGE_TAG with no network, a read-only root
# filesystem and only the output directory (and the data file's directory, read-only) mounted.
# The image is tagged modelberth-model-<name>:<version>; the last line printed is that reference.
#
# Environment: BASE_IMAGE (trainer image and the busybox copier stage; see docker-lib.sh), IMAGE_PREFIX (modelberth-), IMAGE_TAG (dev),
# BUILD_TRAINER=0 to use an existing trainer image as is.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/docker-lib.sh
BASE_IMAGE="$(resolve_base_image)"
IMAGE_PREFIX="${IMAGE_PREFIX:-modelberth-}"
IMAGE_TAG="${IMAGE_TAG:-dev}"
STATE="${MODELBERTH_STATE_DIR:-$PWD/.modelberth}/docker"

data="" target="" dataset="" name="" from="" version="" budget=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data="$2"; shift 2 ;;
    --target) target="$2"; shift 2 ;;
    --dataset) dataset="$2"; shift 2 ;;
    --name) name="$2"; shift 2 ;;
    --time-budget) budget="$2"; shift 2 ;;
    --from) from="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "docker-model-image: unknown argument $1" >&2; exit 2 ;;
  esac
done

mkdir -p "$STATE"
work="$(mktemp -d "$STATE/model-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT

if [ -z "$from" ]; then
  trainer="${IMAGE_PREFIX}trainer:${IMAGE_TAG}"
  if [ "${BUILD_TRAINER:-1}" = 1 ] || ! "$DOCKER" image inspect "$trainer" >/dev/null 2>&1; then
    BASE_IMAGE="$BASE_IMAGE" scripts/docker-build.sh trainer >&2
  fi
  mkdir -p "$work/out"
  chown 10001:10001 "$work/out" 2>/dev/null || chmod 0777 "$work/out"
  args=(modelberth train --store /out)
  mounts=(-v "$work/out:/out")
  if [ -n "$data" ]; then
    [ -f "$data" ] || { echo "docker-model-image: no file $data" >&2; exit 2; }
    data_abs="$(cd "$(dirname "$data")" && pwd)/$(basename "$data")"
    mounts+=(-v "$(dirname "$data_abs"):/data:ro")
    args+=(--data "/data/$(basename "$data_abs")")
  else
    args+=(--dataset "${dataset:-iris}")
  fi
  [ -z "$target" ] || args+=(--target "$target")
  [ -z "$name" ] || args+=(--name "$name")
  [ -z "$budget" ] || args+=(--time-budget "$budget")
  args+=("${extra[@]}")
  echo "docker-model-image: training in $trainer: ${args[*]}" >&2
  "$DOCKER" run --rm --network none --user 10001:10001 --read-only --tmpfs /tmp:rw,nosuid,nodev \
    --cap-drop ALL --security-opt no-new-privileges "${mounts[@]}" "$trainer" "${args[@]}" >&2
  from="$work/out"
  if [ -z "$name" ]; then
    names=("$from"/*/latest)
    [ ${#names[@]} -eq 1 ] && [ -f "${names[0]}" ] || { echo "docker-model-image: expected one model in $from" >&2; exit 1; }
    name="$(basename "$(dirname "${names[0]}")")"
  fi
fi

[ -n "$name" ] || { echo "docker-model-image: --name is required with --from" >&2; exit 2; }
if [ -z "$version" ]; then
  pointer="$from/$name/champion"
  [ -f "$pointer" ] || pointer="$from/$name/latest"
  version="$(tr -d '[:space:]' <"$pointer")"
fi
src="$from/$name/$version"
[ -f "$src/model.json" ] || { echo "docker-model-image: no artifact at $src" >&2; exit 1; }

# The build context: the one version, its latest pointer, and the copier script.
ctx="$work/context"
mkdir -p "$ctx/models/$name"
cp -R "$src" "$ctx/models/$name/$version"
printf '%s\n' "$version" >"$ctx/models/$name/latest"
cp docker/model/copy-model "$ctx/copy-model"
chmod -R u=rwX,go=rX "$ctx"

sha="$(sed -n 's/.*"model_sha256": *"\([0-9a-f]\{64\}\)".*/\1/p' "$src/model.json" | head -1)"
created="$(sed -n 's/.*"created_at": *"\([^"]*\)".*/\1/p' "$src/model.json" | head -1)"
# Image repository names allow no "_" runs or trailing separators; model names are [a-z0-9][a-z0-9_-]*.
repo="${IMAGE_PREFIX}model-$(printf '%s' "$name" | tr '_' '-' | sed 's/--*/-/g; s/-$//')"
image="$repo:$version"
log="$STATE/build-model.log"
if ! "$DOCKER" build --network host -f docker/model/Dockerfile -t "$image" \
  --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg MODEL_NAME="$name" --build-arg MODEL_VERSION="$version" \
  --build-arg MODEL_SHA256="$sha" --build-arg CREATED="${created:-unknown}" \
  --build-arg REVISION="${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}" "$ctx" >"$log" 2>&1; then
  echo "docker-model-image: build failed; last lines of $log:" >&2
  tail -30 "$log" >&2
  exit 1
fi
size=$("$DOCKER" image inspect --format '{{.Size}}' "$image")
echo "docker-model-image: $image $((size / 1000)) kB" >&2
echo "$image"
