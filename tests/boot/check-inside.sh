#!/bin/bash
# Runs inside the booted Debian root (a oneshot unit after multi-user.target): checks the
# installed package the way an admin uses it, writes the verdict to /boot-check.result and
# powers the container off.
exec >/boot-check.log 2>&1
set -u
verdict=OK
fail() { echo "FAIL: $*"; verdict="FAIL: $*"; }
finish() { echo "$verdict" >/boot-check.result; systemctl poweroff; exit 0; }
wait_for() { # wait_for SECONDS CMD...: until CMD succeeds
    local limit=$1; shift
    for _ in $(seq 1 $((limit * 5))); do "$@" && return 0; sleep 0.2; done
    return 1
}
healthz() {
    exec 3<>/dev/tcp/127.0.0.1/8025 || return 1
    printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    grep -q '^ok' <&3; local rc=$?; exec 3<&-; return $rc
}

[ "$(stat -c '%U:%G %a' /etc/sidesync/sidesync.toml)" = "root:sidesync 640" ] || fail "config permissions: $(stat -c '%U:%G %a' /etc/sidesync/sidesync.toml)"
[ "$(stat -c '%U:%G %a' /etc/sidesync)" = "root:sidesync 750" ] || fail "config folder permissions"
[ "$(systemctl is-enabled sidesync)" = enabled ] || fail "the package did not enable the unit"
wait_for 60 systemctl is-active --quiet sidesync || { systemctl status sidesync --no-pager; journalctl -u sidesync --no-pager; fail "sidesync is not active"; finish; }
wait_for 30 healthz || fail "/healthz does not answer ok"
# Exit 1 says a mailbox needs attention (the broken one will fail); 3 would be "not running".
sidesync status; rc=$?
[ "$rc" = 0 ] || [ "$rc" = 1 ] || fail "sidesync status over the control socket (exit $rc)"
sidesync status | grep -q "^sidesync .* 1 mailboxes" || fail "status: $(sidesync status 2>&1)"
# Someone outside the service's group cannot operate it, nor read the config.
if runuser -u nobody -- sidesync status --config /etc/sidesync/sidesync.toml 2>/tmp/nobody.err; then fail "nobody may operate the appliance"; fi
cat /tmp/nobody.err
pid=$(systemctl show -p MainPID --value sidesync)

# Reload: applied, same process.
systemctl reload sidesync || fail "systemctl reload"
wait_for 30 sh -c 'journalctl -u sidesync --no-pager | grep -q "config reloaded"' || fail "no 'config reloaded' in the journal"
[ "$(systemctl show -p MainPID --value sidesync)" = "$pid" ] || fail "reload restarted the process"
# A config with errors: refused, the service goes on.
cp /etc/sidesync/sidesync.toml /root/good.toml
printf '\n[appliance.nonsense]\n' >>/etc/sidesync/sidesync.toml
systemctl reload sidesync || fail "systemctl reload (broken config)"
wait_for 30 sh -c 'journalctl -u sidesync --no-pager | grep -q "reload refused"' || fail "no 'reload refused' in the journal"
systemctl is-active --quiet sidesync || fail "a broken config on reload stopped the service"
[ "$(systemctl show -p MainPID --value sidesync)" = "$pid" ] || fail "the broken reload restarted the process"
cp /root/good.toml /etc/sidesync/sidesync.toml

# The deliberate failure (a server that refuses connections) at warning priority, with the
# mailbox as a journal field.
wait_for 60 sh -c 'journalctl -u sidesync -p warning --no-pager | grep -q "broken@example.com"' || fail "journalctl -p warning does not show the failing mailbox"
journalctl -u sidesync -p warning --no-pager
journalctl -u sidesync --no-pager F_MAILBOX=broken@example.com | grep -q . || fail "no F_MAILBOX journal field"
journalctl -u sidesync -p warning --no-pager | grep -q "sidesync starting" && fail "an info line at warning priority"

# Stop: clean.
systemctl stop sidesync || fail "systemctl stop"
[ "$(systemctl show -p Result --value sidesync)" = success ] || fail "stop result: $(systemctl show -p Result --value sidesync)"
# And started again by hand, as an admin does after an edit.
systemctl start sidesync || fail "systemctl start"
wait_for 30 healthz || fail "/healthz after systemctl start"
systemctl stop sidesync || fail "systemctl stop (again)"
journalctl -u sidesync --no-pager | tail -20
finish
