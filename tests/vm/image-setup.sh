#!/bin/bash
# Runs in the image's chroot at build time (IMAGE_EXTRA): the check unit and a mailbox that fails.
set -e
cat >>/etc/sidesync/sidesync.toml <<'TOML'

[[profile]]
name = "closed"
is_default = true
incoming_server_location = "127.0.0.1"
incoming_port_number = 1
incoming_tls = "none"
allow_plaintext_login = true
min_polling_interval = "10s"
timeout_mailbox_connection_after = "5s"

[[mailbox]]
email_address = "vm-broken@example.com"
approval = "approved"
password_credential = "broken.pw"
TOML
install -d -m 0700 /etc/sidesync/credentials
printf 'not-a-real-password\n' >/etc/sidesync/credentials/broken.password
chmod 0600 /etc/sidesync/credentials/broken.password
install -d /etc/systemd/system/sidesync.service.d
printf '[Service]\nLoadCredential=broken.pw:/etc/sidesync/credentials/broken.password\n' \
    >/etc/systemd/system/sidesync.service.d/credentials.conf
printf '[Unit]\nAfter=multi-user.target sidesync.service\n[Service]\nType=oneshot\nExecStart=/usr/local/sbin/vm-check\n[Install]\nWantedBy=multi-user.target\n' \
    >/etc/systemd/system/vm-check.service
systemctl enable vm-check.service >/dev/null 2>&1
rm -f /usr/local/sbin/image-setup
