"""The `keep` command line."""
