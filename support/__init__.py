"""What the tests, the benchmarks and the demo share: starting keep-server,
keep-checkin and the real services (PostgreSQL, an S3 server, BIND) on
127.0.0.1, a byte-counting and fault-injecting TCP proxy, and the check that a
restored tree equals its source. Not shipped in the wheel."""
