#!/usr/bin/env bash
# Lays out the image's whole root filesystem in DIR (empty or absent) from a built tether binary:
#   /usr/local/bin/tether                 the binary
#   the shared libraries `ldd` names      glibc and libgcc_s from this machine's Debian, the loader included
#   /etc/ssl/certs/ca-certificates.crt    Debian's CA bundle (rustls-native-certs reads it for HTTPS platforms)
#   /etc/passwd, /etc/group               root and nonroot (65532), the user the image runs as
#   /etc/nsswitch.conf                    hosts: files dns (glibc's built-in files and dns modules)
#   /tmp                                  empty, 1777 (read-only in the chart: readOnlyRootFilesystem)
# Every file is root's and world-readable, so a COPY that drops ownership (Docker's) gives the same image.
# Then it prints one line per Debian package the files come from: "package version".
#
# Used by tools/image/build.sh (make image, the tested path) and by the Dockerfile's build stage, so both
# images have this one layout.
#
#   tools/image/rootfs.sh BINARY DIR
set -euo pipefail
(( $# == 2 )) || { echo "usage: rootfs.sh BINARY DIR" >&2; exit 2; }
binary=$1 root=$2
[[ -x "$binary" ]] || { echo "rootfs.sh: $binary is not an executable" >&2; exit 1; }
bundle=/etc/ssl/certs/ca-certificates.crt
[[ -s "$bundle" ]] || { echo "rootfs.sh: $bundle missing (apt-get install ca-certificates)" >&2; exit 1; }
mkdir -p "$root"
[[ -z "$(ls -A "$root")" ]] || { echo "rootfs.sh: $root is not empty" >&2; exit 1; }
umask 022

install -D -m 0755 "$binary" "$root/usr/local/bin/tether"

# The libraries as ldd resolves them, at the path it names (the loader at the binary's PT_INTERP path),
# with the symlinks followed: the image holds plain files.
libs=()
while read -r path; do
  libs+=("$path")
done < <(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }')
(( ${#libs[@]} > 0 )) || { echo "rootfs.sh: ldd found no libraries; a static binary needs no loader, check it" >&2; exit 1; }
for lib in "${libs[@]}"; do
  install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
done

install -D -m 0644 "$bundle" "$root$bundle"
install -d -m 0755 "$root/etc"
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' \
  >"$root/etc/passwd"
printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' >"$root/etc/group"
printf '%s\n' 'hosts: files dns' >"$root/etc/nsswitch.conf"
install -d -m 1777 "$root/tmp"

# Which Debian packages those files are. dpkg records the path a package ships (/lib/... on bookworm), which
# may be the ldd path or the one symlinks lead to. The CA bundle is generated from ca-certificates.
{
  for lib in "${libs[@]}"; do
    dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")" 2>/dev/null ||
      echo "rootfs.sh: no Debian package owns $lib" >&2
  done | cut -d: -f1 | sed 's/,.*//'
  echo ca-certificates
} | sort -u | xargs dpkg-query -W -f='${binary:Package} ${Version}\n'
