#!/usr/bin/env python3
"""A bare IMAP client that stores nothing: the ceiling of what one TLS connection delivers.

Usage: bare_imap.py HOST PORT CAFILE USER PASSWORD [BATCH]
Fetches every message of INBOX with BODY.PEEK[] in UID batches and discards it.
"""
import imaplib
import ssl
import sys

host, port, cafile, user, password = sys.argv[1:6]
batch = int(sys.argv[6]) if len(sys.argv) > 6 else 200
ctx = ssl.create_default_context(cafile=cafile)
imap = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx)
imap.login(user, password)
imap.select("INBOX", readonly=True)
typ, data = imap.uid("SEARCH", None, "ALL")
uids = data[0].split()
count = 0
nbytes = 0
for i in range(0, len(uids), batch):
    chunk = b",".join(uids[i:i + batch]).decode()
    typ, resp = imap.uid("FETCH", chunk, "(BODY.PEEK[])")
    for part in resp:
        if isinstance(part, tuple):
            count += 1
            nbytes += len(part[1])
imap.logout()
print(f"{count} {nbytes}")
