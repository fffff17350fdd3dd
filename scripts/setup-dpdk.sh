#!/usr/bin/env bash
# Install DPDK 22.11 (Debian's packages) for weir's `dpdk` feature, and optionally reserve
# hugepages.
#
#   sudo scripts/setup-dpdk.sh                   # packages only (tests use --no-huge)
#   sudo scripts/setup-dpdk.sh --hugepages 1024  # + 1024 pages of 2 MiB (2 GiB), mounted
#
# On a NIC host, bind the NIC to vfio-pci afterwards (README: "Running on a NIC host").
set -euo pipefail

pages=0
while [ $# -gt 0 ]; do
  case "$1" in
    --hugepages) pages="${2:?--hugepages needs a page count}"; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "setup-dpdk.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-dpdk.sh: run as root (apt and hugepages need it)" >&2
  exit 1
fi

need=()
for p in dpdk dpdk-dev libdpdk-dev pkg-config libclang-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
version=$(pkg-config --modversion libdpdk)
case "$version" in
  22.11*) echo "DPDK $version (libdpdk) ready" ;;
  *) echo "setup-dpdk.sh: found DPDK $version; weir's ffi crate is written for 22.11" >&2; exit 1 ;;
esac

if [ "$pages" -gt 0 ]; then
  echo "$pages" > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
  got=$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages)
  mountpoint -q /dev/hugepages || { mkdir -p /dev/hugepages && mount -t hugetlbfs nodev /dev/hugepages; }
  echo "hugepages: $got of $pages x 2 MiB reserved, mounted on /dev/hugepages"
  if [ "$got" -lt "$pages" ]; then
    echo "setup-dpdk.sh: memory is fragmented; reserve hugepages at boot instead (kernel command line: hugepages=$pages)" >&2
    exit 1
  fi
fi
