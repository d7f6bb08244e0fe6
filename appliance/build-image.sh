#!/usr/bin/env bash
# Builds a small Debian 12 VM image with sidesync installed from its package:
#   appliance/build-image.sh [OUT_DIR]   (default target/image; needs root)
# Writes OUT_DIR/sidesync.qcow2 (an ext4 root file system, no partition table) and, beside it,
# the kernel and initrd to boot it with (qemu -kernel/-initrd; see README, Install). Inside:
# systemd, systemd-networkd (DHCP on the first Ethernet), the sidesync package with its unit
# enabled, the status listener on 0.0.0.0:8025 so a forwarded port reaches it, and a serial
# console. The base system is cached in target/image-base/.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages debootstrap qemu-utils e2fsprogs
out=${1:-target/image}
mkdir -p "$out"
deb=$(bash appliance/build-deb.sh | tail -1)
base=target/image-base/bookworm
if [ ! -e "$base/.complete" ]; then
    rm -rf "$base"
    mkdir -p target/image-base
    mirror=$(awk '/^URIs/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    debootstrap --variant=minbase \
        --include=systemd,systemd-sysv,dbus,adduser,init-system-helpers,util-linux,linux-image-amd64,initramfs-tools,procps,iproute2 \
        bookworm "$base" "${mirror:-http://deb.debian.org/debian}" >target/image-base/debootstrap.log 2>&1 \
        || { tail -20 target/image-base/debootstrap.log; exit 1; }
    touch "$base/.complete"
fi
root=$(mktemp -d /tmp/sidesync-image.XXXXXX)
trap 'rm -rf "$root"' EXIT
cp -a "$base/." "$root/"
rm -f "$root/.complete"
cp "$deb" "$root/tmp/sidesync.deb"
chroot "$root" dpkg -i /tmp/sidesync.deb >/dev/null
rm -f "$root/tmp/sidesync.deb"
# Reached from outside the VM (a forwarded port): listen on every address, answer the loopback
# names the host uses.
sed -i 's/^status_listen = .*/status_listen = "0.0.0.0:8025"\nstatus_allowed_hosts = ["127.0.0.1", "localhost"]/' \
    "$root/etc/sidesync/sidesync.toml"
echo sidesync >"$root/etc/hostname"
printf '/dev/vda / ext4 defaults 0 1\n' >"$root/etc/fstab"
printf '[Match]\nName=en* eth*\n[Network]\nDHCP=yes\n' >"$root/etc/systemd/network/50-dhcp.network"
chroot "$root" systemctl enable systemd-networkd serial-getty@ttyS0 >/dev/null 2>&1
# Anything extra (a check, a config) a caller wants inside: IMAGE_EXTRA=DIR is copied over /.
if [ -n "${IMAGE_EXTRA:-}" ]; then
    cp -a "$IMAGE_EXTRA/." "$root/"
    [ -x "$root/usr/local/sbin/image-setup" ] && chroot "$root" /usr/local/sbin/image-setup
fi
# No root password: log in on the console as root only where the console is yours.
chroot "$root" passwd -d root >/dev/null
cp "$root"/boot/vmlinuz-* "$out/vmlinuz"
cp "$root"/boot/initrd.img-* "$out/initrd.img"
raw="$out/sidesync.raw"
rm -f "$raw"
truncate -s 1536M "$raw"
mkfs.ext4 -q -L sidesync-root -d "$root" "$raw"
qemu-img convert -c -O qcow2 "$raw" "$out/sidesync.qcow2"
rm -f "$raw"
ls -l "$out"
