#!/usr/bin/env bash
# Install the Debian/Ubuntu packages a target needs, only those missing.
# Usage: tools/system-packages.sh run|test|bench [--list]   (--list: print them, install nothing)
set -euo pipefail

run_packages=(python3-venv redis-server golang-go golang-github-vmware-govmomi-dev
  ntfs-3g wimtools e2fsprogs fdisk mtools dosfstools
  libldap2-dev libsasl2-dev gcc python3-dev
  fuse3 nfs-ganesha nfs-ganesha-vfs)
# libldap2-dev, libsasl2-dev, gcc and python3-dev build python-ldap (the directory sign-in's client).
# nodejs and npm run Azurite (tools/azurite), the Azure Storage emulator of the vault's tests;
# xfsprogs builds the XFS images of the file-level restore tests. The disk image tools come from
# run_packages: mkntfs and ntfssecaudit (ntfs-3g), wimlib-imagex (wimtools), mke2fs and debugfs
# (e2fsprogs), sfdisk (fdisk), mkfs.vfat (dosfstools), mcopy (mtools). Under make test a test that
# finds one missing fails (tests/strict.py), so whatever a test runs must be listed here.
# slapd (OpenLDAP, a private instance from tools/ldap_server.py) and ldap-utils: the directory sign-in's tests.
# fuse3 (fusermount3, libfuse3 for mfusepy) and nfs-ganesha with its VFS FSAL serve a recovery point to ESXi
# (instant/); libnfs-utils (nfs-cat, nfs-ls, and libnfs for in-place writes) reads the export without a mount.
test_packages=("${run_packages[@]}" postgresql chromium nodejs npm xfsprogs
  slapd ldap-utils libnfs-utils)
bench_packages=("${test_packages[@]}" restic)

case "${1:-run}" in
  run) wanted=("${run_packages[@]}") ;;
  test) wanted=("${test_packages[@]}") ;;
  bench) wanted=("${bench_packages[@]}") ;;
  *) echo "usage: $0 run|test|bench [--list]" >&2; exit 2 ;;
esac
if [ "${2:-}" = --list ]; then printf '%s\n' "${wanted[@]}"; exit 0; fi

missing=()
for pkg in "${wanted[@]}"; do
  # NodeSource's nodejs package includes npm and conflicts with Debian's: any working npm will do.
  [ "$pkg" = npm ] && command -v npm >/dev/null && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "Installing Debian packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
