#!/bin/bash
# Inside the VM image (a oneshot after multi-user.target): reload through systemd, and the
# deliberate failure at warning priority. Reports on the serial console as VMCHECK lines.
say() { echo "VMCHECK: $*" >/dev/ttyS0; }
for _ in $(seq 1 300); do systemctl is-active --quiet sidesync && break; sleep 1; done
systemctl is-active --quiet sidesync && say "active" || say "FAIL not active"
pid=$(systemctl show -p MainPID --value sidesync)
systemctl reload sidesync && say "reload accepted" || say "FAIL reload"
for _ in $(seq 1 60); do journalctl -u sidesync --no-pager | grep -q "config reloaded" && break; sleep 1; done
journalctl -u sidesync --no-pager | grep -q "config reloaded" && say "reloaded" || say "FAIL no config reloaded"
[ "$(systemctl show -p MainPID --value sidesync)" = "$pid" ] && say "same process" || say "FAIL restarted"
for _ in $(seq 1 120); do journalctl -u sidesync -p warning --no-pager | grep -q "vm-broken@example.com" && break; sleep 1; done
if journalctl -u sidesync -p warning --no-pager | grep -q "vm-broken@example.com"; then
    say "warning shows the failure: $(journalctl -u sidesync -p warning --no-pager | grep -m1 vm-broken | cut -c1-160)"
else
    say "FAIL journalctl -p warning shows no failure"
fi
say "done"
