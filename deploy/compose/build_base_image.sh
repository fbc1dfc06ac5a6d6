#!/usr/bin/env bash
# Build the compose deployment's base image from Debian packages, for hosts that reach no image
# registry (issue 17 item 5): `debootstrap` of bookworm with python3 (3.11, venv), iproute2 (tc
# for netem), CA certificates and Debian's prometheus, imported with `docker import`. Then
#   docker build --network host --build-arg BASE_IMAGE=prfaas-base:bookworm ...
# builds deploy/compose/Dockerfile on it (see deploy/README.md; up_local.sh does both). Needs root, debootstrap
# and a reachable Debian mirror; the rootfs is cached in ROOTFS between runs.
#
#   deploy/compose/build_base_image.sh [TAG] [ROOTFS] [MIRROR]
set -euo pipefail
TAG=${1:-prfaas-base:bookworm}
ROOTFS=${2:-/var/cache/prfaas/bookworm-rootfs}
MIRROR=${3:-http://deb.debian.org/debian}
PACKAGES=python3,python3-venv,python3-pip,iproute2,ca-certificates,prometheus,curl
if [ ! -x "$ROOTFS/usr/bin/python3" ] || [ ! -x "$ROOTFS/usr/bin/prometheus" ]; then
  rm -rf "$ROOTFS"
  mkdir -p "$ROOTFS"
  debootstrap --variant=minbase --include="$PACKAGES" bookworm "$ROOTFS" "$MIRROR"
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
fi
# The host's CA bundle, so pip and apt inside builds trust the same TLS interception the host does.
cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
tar -C "$ROOTFS" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' - "$TAG"
echo "$TAG"
