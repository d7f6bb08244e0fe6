#!/usr/bin/env bash
# The Debian package booted under systemd: a debootstrap Debian 12 root with systemd (cached in
# target/boot/), the package built by appliance/build-deb.sh installed with dpkg, a mailbox whose
# password comes through LoadCredential= and whose server refuses connections, then the root
# booted with systemd-nspawn (private network). tests/boot/check-inside.sh checks, inside:
# config readable only by root and the service, unit enabled by the package, /healthz, the
# control socket (and nobody else), reload applied and a broken one refused without a restart,
# journald priorities and fields, a clean stop. Part of the test command; about 20 s once the
# root is cached (its first build downloads Debian packages: a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages debootstrap systemd-container
if ! grep -q cgroup /proc/self/mounts; then
    echo "boot test: SKIPPED — no cgroup file system mounted here (a chroot): systemd-nspawn cannot boot" >&2
    exit 0
fi
deb=$(bash appliance/build-deb.sh | tail -1)
base=target/boot/bookworm-systemd
if [ ! -e "$base/.complete" ]; then
    rm -rf "$base"
    mkdir -p target/boot
    mirror=$(awk '/^URIs/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,adduser,init-system-helpers,util-linux \
        bookworm "$base" "${mirror:-http://deb.debian.org/debian}" >target/boot/debootstrap.log 2>&1 \
        || { tail -20 target/boot/debootstrap.log; exit 1; }
    touch "$base/.complete"
fi
root=$(mktemp -d /tmp/sidesync-boot.XXXXXX)
trap 'rm -rf "$root"' EXIT
cp -a "$base/." "$root/"
# Can this machine run a container at all (an unprivileged CI container cannot)? Asked of the
# bare Debian root, before anything of sidesync is in it.
if ! timeout 60 systemd-nspawn -q -D "$root" --register=no --keep-unit --private-network /bin/true \
    >target/boot/probe.log 2>&1; then
    echo "boot test: SKIPPED — systemd-nspawn cannot run a container here: $(tail -1 target/boot/probe.log)" >&2
    exit 0
fi
cp "$deb" "$root/tmp/sidesync.deb"
chroot "$root" dpkg -i /tmp/sidesync.deb >/dev/null
# Both man pages and the completions are in the package.
for f in /usr/share/man/man1/sidesync.1.gz /usr/share/man/man5/sidesync.toml.5.gz \
    /usr/share/bash-completion/completions/sidesync; do
    [ -s "$root$f" ] || { echo "boot test: the package does not ship $f" >&2; exit 1; }
done
# The admin's part: a profile, a mailbox with its password as a systemd credential.
cat >>"$root/etc/sidesync/sidesync.toml" <<'TOML'

[[profile]]
name = "closed"
is_default = true
incoming_server_location = "127.0.0.1"
incoming_port_number = 1
incoming_tls = "none"
allow_plaintext_login = true
min_polling_interval = "5s"
timeout_mailbox_connection_after = "5s"

[[mailbox]]
email_address = "broken@example.com"
approval = "approved"
password_credential = "broken.pw"
TOML
install -d -m 0700 "$root/etc/sidesync/credentials"
printf 'not-a-real-password\n' >"$root/etc/sidesync/credentials/broken.password"
chmod 0600 "$root/etc/sidesync/credentials/broken.password"
install -d "$root/etc/systemd/system/sidesync.service.d"
printf '[Service]\nLoadCredential=broken.pw:/etc/sidesync/credentials/broken.password\n' \
    >"$root/etc/systemd/system/sidesync.service.d/credentials.conf"
install -m 0755 tests/boot/check-inside.sh "$root/usr/local/sbin/boot-check"
cat >"$root/etc/systemd/system/boot-check.service" <<'UNIT'
[Unit]
Description=sidesync boot check
After=multi-user.target sidesync.service
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/boot-check
[Install]
WantedBy=multi-user.target
UNIT
chroot "$root" systemctl enable boot-check.service >/dev/null 2>&1
echo sidesync-boot >"$root/etc/hostname"
timeout 300 systemd-nspawn -q -b -D "$root" --register=no --keep-unit --private-network \
    >target/boot/console.log 2>&1 || true
echo "--- inside the container:"
cat "$root/boot-check.log" 2>/dev/null || tail -30 target/boot/console.log
verdict=$(cat "$root/boot-check.result" 2>/dev/null || echo "no verdict (the check did not run; console in target/boot/console.log)")
echo "boot test: $verdict"
[ "$verdict" = OK ]
