"""What keep-server and keep-checkin share, and nothing else: how they keep
quiet about themselves and their clients (`quiet.py`), their listening
socket (`listening.py`), how they start (`starting.py`: the entry point that
names a missing extra, HOST:PORT options, serving), systemd notify and
watchdog (`systemd.py`), and the
one-thread SQLite connection both embedded stores run on (`sqlite_thread.py`).
keep-server's own modules are the rest of `keep.server`; keep-checkin's are
`keep.server.checkin`."""
