"""keep-checkin: the device's DNS pointer and signed update metadata.

A separate service with its own registry; it never talks to keep-server.
"""
