#!/usr/bin/env python3
"""The floor of a first sync: a bare IMAP client that logs in to every mailbox once over TLS,
opens INBOX read-only and logs out, storing nothing.

Usage: bare_login.py HOST PORT CAFILE USERS_FILE PASSWORD [THREADS]
USERS_FILE holds one address per line. Prints "LOGINS ERRORS SECONDS".
"""
import imaplib
import ssl
import sys
import threading
import time

host, port, cafile, users_file, password = sys.argv[1:6]
threads = int(sys.argv[6]) if len(sys.argv) > 6 else 1
users = [u.strip() for u in open(users_file) if u.strip()]
ctx = ssl.create_default_context(cafile=cafile)
lock = threading.Lock()
done = [0, 0]


def work(part):
    for user in part:
        ok = True
        try:
            imap = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx)
            imap.login(user, password)
            imap.select("INBOX", readonly=True)
            imap.logout()
        except Exception:  # counted, not fatal: the figure says how many failed
            ok = False
        with lock:
            done[0 if ok else 1] += 1


start = time.monotonic()
workers = [threading.Thread(target=work, args=(users[i::threads],)) for i in range(threads)]
for w in workers:
    w.start()
for w in workers:
    w.join()
print(f"{done[0]} {done[1]} {time.monotonic() - start:.2f}")
