#!/usr/bin/env bash
# `make image`: the project's OCI image from Debian packages and PyPI alone.
#   1. wheels: our wheel plus every runtime dependency, built/downloaded on the host (pip, PyPI)
#   2. rootfs: Debian bookworm by mmdebstrap (python3 + venv only), the wheels installed into /opt/vhostplug with
#      --no-index, pip/setuptools and docs/caches removed afterwards
#   3. image: Debian's buildah, from scratch + add rootfs + config + commit, pushed to an oci-archive under build/
# Output: build/vhostplug-<version>.oci.tar, build/vhostplug-<version>.digest (manifest digest), and
# build/vhostplug-<version>.size (uncompressed bytes). Cached: nothing is rebuilt while the inputs (this script,
# pyproject.toml, src/vhostplug) are unchanged. Uses private buildah storage under build/ and removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-$ROOT/.venv/bin/python}
NAME=ghcr.io/vhostplug/vhostplug
VERSION=$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
OUT=$ROOT/build
ARCHIVE=$OUT/vhostplug-$VERSION.oci.tar
STAMP=$OUT/vhostplug-$VERSION.inputs
mkdir -p "$OUT"
# one build at a time per checkout: a second caller (the suite's early start and its image fixture, two terminals)
# waits here and then finds the archive up to date
exec 9>"$OUT/.build.lock"
flock 9

inputs=$( { sha256sum scripts/build-image.sh pyproject.toml README.md; \
            find src/vhostplug -type f -name '*.py' -o -type f -name 'py.typed' | LC_ALL=C sort | xargs sha256sum; } \
          | sha256sum | cut -d' ' -f1)
if [ -f "$ARCHIVE" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$inputs" ] && [ "${FORCE:-0}" != 1 ]; then
  echo "image: $NAME:$VERSION up to date ($(cat "$OUT/vhostplug-$VERSION.digest"))"
  exit 0
fi

# in memory when /dev/shm is there: dpkg, buildah's vfs copies and the clean-up touch ~10^4 small files
TMPBASE=/tmp
if [ -d /dev/shm ] && [ -w /dev/shm ]; then TMPBASE=/dev/shm; fi
WORK=$(mktemp -d "$TMPBASE/vhp-image-XXXXXX")
export TMPDIR=$WORK
cleanup() {
  if [ -n "${CTR:-}" ]; then buildah "${BUILDAH_OPTS[@]}" rm "$CTR" >/dev/null 2>&1 || true; fi
  buildah "${BUILDAH_OPTS[@]}" rmi --all --force >/dev/null 2>&1 || true
  # an interrupted mmdebstrap leaves its chroot's mounts (/proc, /sys, /dev/pts and the host's own /dev/shm, the
  # same tmpfs as $WORK): unmount them first, or rm would walk into the host's /dev/shm
  { grep -o " $WORK/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
  # vfs layers of buildah's private storage are plain folders; overlay is never mounted here
  rm -rf --one-file-system "$WORK"
}
BUILDAH_OPTS=(--root "$WORK/storage" --runroot "$WORK/run" --storage-driver vfs)
trap cleanup EXIT
trap "exit 143" TERM INT HUP  # so that a stop still runs cleanup
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

t0=$SECONDS
echo "image: wheels (vhostplug $VERSION and its dependencies)"
# from a copy: setuptools would otherwise leave build/lib (and reuse stale files from it) in the checkout
mkdir -p "$WORK/wheels" "$WORK/src"
cp -a pyproject.toml README.md src "$WORK/src/"
"$PY" -m pip wheel -q --wheel-dir "$WORK/wheels" "$WORK/src" >/dev/null 2>"$WORK/pip.log" || { cat "$WORK/pip.log"; exit 1; }
echo "image: wheels done in $((SECONDS - t0)) s"

echo "image: Debian bookworm root filesystem (mmdebstrap)"
# merged /usr made by mmdebstrap's hook, not by the usrmerge package (which would pull in perl, ~55 MB);
# docs, man pages, locales, glibc's iconv modules and caches are never read by the agent or the webhook
CHROOT='chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin'
# every native extension the agent and the webhook load must find its libraries (grpcio needs libstdc++)
SMOKE='import grpc, lxml.etree, pydantic_core, yaml, aiohttp, multidict, ovs, pyroute2, vhostplug.agent.main, vhostplug.webhook.server, vhostplug.deviceplugin.server, vhostplug.cli'

mmdebstrap --quiet --variant=essential --include=python3,python3-venv,libstdc++6 \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr --dpkgopt=force-unsafe-io \
  --dpkgopt='path-exclude=/usr/lib/x86_64-linux-gnu/gconv/*' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook='mkdir -p "$1/tmp/wheels"' \
  --customize-hook="sync-in $WORK/wheels /tmp/wheels" \
  --customize-hook="$CHROOT python3 -m venv /opt/vhostplug" \
  --customize-hook="$CHROOT /opt/vhostplug/bin/pip install -q --no-index --no-compile --find-links /tmp/wheels vhostplug" \
  --customize-hook="$CHROOT /opt/vhostplug/bin/pip uninstall -q -y pip setuptools" \
  --customize-hook="$CHROOT /opt/vhostplug/bin/python -c '$SMOKE'" \
  --customize-hook="$CHROOT /opt/vhostplug/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/vhostplug/lib" \
  --customize-hook="$CHROOT dpkg --purge python3-venv python3.11-venv python3-pip-whl python3-setuptools-whl >/dev/null" \
  --customize-hook='rm -rf "$1/tmp/wheels" "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/* "$1"/root/.cache' \
  --customize-hook='find "$1/usr/lib/python3.11" -name __pycache__ -prune -exec rm -rf {} +' \
  --customize-hook='ln -s /opt/vhostplug/bin/vhostplug "$1/usr/local/bin/vhostplug"' \
  bookworm "$WORK/rootfs.tar" \
  "deb http://deb.debian.org/debian bookworm main" \
  "deb http://deb.debian.org/debian bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main"

echo "image: root filesystem done at $((SECONDS - t0)) s"
echo "image: OCI image (buildah)"
# the default command is KubeVirt's binding sidecar (KubeVirt starts it with the image's default command and may add
# arguments); the agent, install-cni and the webhook name their command in deploy/
CTR=$(buildah "${BUILDAH_OPTS[@]}" from --quiet scratch)
buildah "${BUILDAH_OPTS[@]}" add --quiet "$CTR" "$WORK/rootfs.tar" / >/dev/null
buildah "${BUILDAH_OPTS[@]}" config \
  --env PATH=/opt/vhostplug/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env PYTHONDONTWRITEBYTECODE=1 \
  --entrypoint '["vhostplug", "kubevirt-sidecar"]' \
  --label org.opencontainers.image.title=vhostplug \
  --label org.opencontainers.image.version="$VERSION" \
  --label org.opencontainers.image.licenses=Apache-2.0 \
  --os linux --arch amd64 "$CTR"
buildah "${BUILDAH_OPTS[@]}" commit --quiet --format oci --timestamp "$SOURCE_DATE_EPOCH" "$CTR" "$NAME:$VERSION" >/dev/null
rm -f "$ARCHIVE.tmp"
buildah "${BUILDAH_OPTS[@]}" push --quiet --digestfile "$WORK/digest" "$NAME:$VERSION" "oci-archive:$ARCHIVE.tmp:$NAME:$VERSION"
mv "$ARCHIVE.tmp" "$ARCHIVE"
cp "$WORK/digest" "$OUT/vhostplug-$VERSION.digest"
size=$(stat -c %s "$WORK/rootfs.tar")
echo "$size" > "$OUT/vhostplug-$VERSION.size"
echo "$inputs" > "$STAMP"
echo "image: $NAME:$VERSION -> $ARCHIVE"
echo "image: built in $((SECONDS - t0)) s"
echo "image: digest $(cat "$OUT/vhostplug-$VERSION.digest"), $((size / 1000000)) MB uncompressed, $(( $(stat -c %s "$ARCHIVE") / 1000000 )) MB archive"
