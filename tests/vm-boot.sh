#!/usr/bin/env bash
# The VM image booted under qemu (software emulation; VM_ACCEL=kvm to use KVM), bounded in time:
# builds it with appliance/build-image.sh (plus a check unit and a mailbox that fails on purpose),
# boots it with the status port forwarded to a free loopback port, reaches /healthz from the host,
# and reads the guest's verdict on its serial console: `systemctl reload` applied in the same
# process, `journalctl -p warning` showing the deliberate failure. A long check (minutes): run it
# by hand, results in bench/RESULTS.md. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages qemu-system-x86 qemu-utils curl
extra=$(mktemp -d /tmp/sidesync-vm-extra.XXXXXX)
trap 'rm -rf "$extra"; [ -n "${qemu:-}" ] && kill "$qemu" 2>/dev/null || true' EXIT
install -D -m 0755 tests/vm/vm-check.sh "$extra/usr/local/sbin/vm-check"
install -D -m 0755 tests/vm/image-setup.sh "$extra/usr/local/sbin/image-setup"
out=target/vm-test
IMAGE_EXTRA=$extra bash appliance/build-image.sh "$out" >&2
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# Software emulation by default: nested KVM on cloud VMs often exists but hangs (seen here).
accel=${VM_ACCEL:-tcg}
console="$out/console.log"; rm -f "$console"
started=$(date +%s)
qemu-system-x86_64 -machine q35,accel=$accel -m 1024 -smp 2 -display none \
    -kernel "$out/vmlinuz" -initrd "$out/initrd.img" -append "root=/dev/vda rw console=ttyS0" \
    -drive "file=$out/sidesync.qcow2,if=virtio,format=qcow2,snapshot=on" \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:8025" -device virtio-net-pci,netdev=n0 \
    -serial "file:$console" &
qemu=$!
deadline=$((started + ${VM_BOOT_LIMIT:-900}))
healthz=""
until [ -n "$healthz" ] && grep -q "VMCHECK: done" "$console" 2>/dev/null; do
    [ "$(date +%s)" -gt "$deadline" ] && { tail -40 "$console"; echo "vm boot: FAIL — not done within the limit"; exit 1; }
    kill -0 "$qemu" 2>/dev/null || { tail -40 "$console"; echo "vm boot: FAIL — qemu exited"; exit 1; }
    if [ -z "$healthz" ] && curl -fsS -m 5 "http://127.0.0.1:$port/healthz" 2>/dev/null | grep -q '^ok'; then
        healthz="after $(( $(date +%s) - started )) s"
    fi
    sleep 2
done
grep "VMCHECK" "$console"
echo "healthz from the host through 127.0.0.1:$port: ok ($healthz; accel $accel)"
if grep -q "VMCHECK: FAIL" "$console"; then echo "vm boot: FAIL"; exit 1; fi
echo "vm boot: OK in $(( $(date +%s) - started )) s"
