#!/usr/bin/env bash
# Builds Tether's container image from a built binary with buildah (no daemon, vfs storage kept under the
# archive's directory and removed after) and writes it as an OCI archive; prints the image's size and the
# Debian packages in it. Skips the build when the archive was made from the same binary, scripts and commit.
#
#   tools/image/build.sh BINARY ARCHIVE      (make image: target/release/tether target/image/tether.oci.tar)
#
# The layout is tools/image/rootfs.sh's, as in the Dockerfile. Load the archive into a registry with
#   skopeo copy oci-archive:ARCHIVE docker://REGISTRY/tether:VERSION
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
(( $# == 2 )) || { echo "usage: build.sh BINARY ARCHIVE" >&2; exit 2; }
binary=$(realpath "$1") archive=$(realpath -m "$2")
"$here/install.sh"

version=$("$binary" --version | awk '{ print $2 }')
revision=$(git -C "$here" rev-parse HEAD)
git -C "$here" diff --quiet HEAD -- || revision+="-dirty"
epoch=$(git -C "$here" log -1 --format=%ct)
out=$(dirname "$archive")
key=$(cat "$binary" "$here"/*.sh <(echo "$revision") | sha256sum | cut -c1-16)
summary="$archive.txt"
if [[ -s "$archive" && -s "$summary" && "$(head -1 "$summary")" == "key $key" ]]; then
  tail -n +2 "$summary"
  exit 0
fi

mkdir -p "$out"
work=$(mktemp -d "$out/build.XXXXXX")
ctr=""
buildah=(buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs)
clean() {
  [[ -n "$ctr" ]] && "${buildah[@]}" rm "$ctr" >/dev/null 2>&1
  # vfs storage holds root-owned copies of the layer; buildah's own cleanup leaves the directories.
  rm -rf "$work"
}
trap clean EXIT
start=$(date +%s)
packages=$("$here/rootfs.sh" "$binary" "$work/rootfs")

ctr=$("${buildah[@]}" from --quiet scratch)
"${buildah[@]}" copy --quiet "$ctr" "$work/rootfs" / >/dev/null
"${buildah[@]}" config \
  --created-by tools/image/build.sh --user 65532:65532 --workingdir / --entrypoint '["/usr/local/bin/tether"]' \
  --label org.opencontainers.image.title=tether \
  --label org.opencontainers.image.source=https://github.com/tether-dev/tether \
  --label org.opencontainers.image.version="$version" \
  --label org.opencontainers.image.revision="$revision" \
  --label org.opencontainers.image.licenses=Apache-2.0 \
  "$ctr"
rm -f "$archive"
"${buildah[@]}" commit --quiet --format oci --disable-compression=false --identity-label=false \
  --timestamp "$epoch" "$ctr" "oci-archive:$archive:$version" >/dev/null

{
  echo "image: $archive (tag $version, revision $revision)"
  echo "size: $(du -k "$archive" | cut -f1) KiB compressed, $(du -sk "$work/rootfs" | cut -f1) KiB unpacked"
  echo "packages (the shared libraries' and the CA bundle's):"
  sed 's/^/  /' <<<"$packages"
} >"$summary.tmp"
{ echo "key $key"; cat "$summary.tmp"; } >"$summary"
rm -f "$summary.tmp"
tail -n +2 "$summary"
echo "image/build.sh: built in $(( $(date +%s) - start ))s" >&2
