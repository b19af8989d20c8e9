#!/usr/bin/env bash
# Build ragway's image with podman on a machine that reaches package registries but no
# image registry: the base image is made from Debian's packages (mmdebstrap), then the
# Dockerfile builds on it (BASE build argument).
#
#   deploy/image/build.sh [TAG]        (as root; `make image` calls it)
#
# What the build needs from this machine rides in as build-time mounts only, never into
# the image: the CA bundle (registries may sit behind a TLS proxy whose CA only this
# machine trusts), a pip.conf naming it, and /opt/wheels where it exists (the local CPU
# torch wheel the embedding export uses instead of a CUDA download).
set -euo pipefail
cd "$(dirname "$0")/../.."

TAG="${1:-ragway:dev}"
SUITE="${DEBIAN_SUITE:-bookworm}"  # Debian 12: python3 is 3.11
BASE_IMAGE="localhost/ragway-base:$SUITE"
WORK="$(mktemp -d -t ragway-image.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
# podman's defaults ask for more open files than this machine grants a container
PODMAN_RUN_FLAGS=(--runtime runc --ulimit nofile=16384:16384 --ulimit nproc=4096:4096)

if ! podman image exists "$BASE_IMAGE"; then
  echo "image: making $BASE_IMAGE from Debian $SUITE packages (mmdebstrap)"
  mmdebstrap --quiet --variant=minbase --include=ca-certificates,python3,python3-venv \
    "$SUITE" "$WORK/base.tar"
  podman import --quiet "$WORK/base.tar" "$BASE_IMAGE" >/dev/null
fi

CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
mounts=(-v "$CA_BUNDLE:$CA_BUNDLE:ro")
printf '[global]\ncert = %s\n' "$CA_BUNDLE" > "$WORK/pip.conf"
build_args=(--build-arg "BASE=$BASE_IMAGE")
if compgen -G "/opt/wheels/torch-*+cpu-*.whl" >/dev/null; then
  printf 'find-links = /opt/wheels\n' >> "$WORK/pip.conf"
  mounts+=(-v /opt/wheels:/opt/wheels:ro)
  build_args+=(--build-arg TORCH_INDEX_URL=)
fi
mounts+=(-v "$WORK/pip.conf:/etc/pip.conf:ro")

echo "image: building $TAG on $BASE_IMAGE"
podman build --quiet "${PODMAN_RUN_FLAGS[@]}" --network=host "${mounts[@]}" "${build_args[@]}" \
  -t "$TAG" .
echo "image: built $TAG ($(podman image inspect --format '{{.Size}}' "$TAG") bytes)"
