"""Which paths a list of patterns selects: git's ignore rules (pathspec's
GitIgnoreSpec), on absolute paths — the one syntax of backup's excludes
(`--exclude`, `--iexclude`, `--exclude-file`, `[backup] excludes`),
restore's `--include`/`--exclude` and `find` (docs/cli.md, "Patterns").

- A pattern without "/" (but a trailing one) matches a name at any depth:
  `*.tmp`, `node_modules`.
- A "/" at the start or in the middle anchors it at the file system's root:
  `/srv/cache` and `srv/cache` are the same.
- `*`, `?` and `[...]` never cross "/"; `**` does: `**/cache`,
  `/home/**/*.log`, `/srv/**`.
- A trailing "/" matches directories only: `build/`.
- `!pattern` selects again what an earlier pattern took out — but not below
  a directory already taken out, whose contents are never looked at.
- A pattern selects everything below what it matches.

Names that are not UTF-8 are matched byte for byte (as surrogate escapes).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from keep.protocol.errors import ExitCode, KeepError


class PatternError(KeepError):
    """Raised for a pattern git's rules cannot read."""

    exit_code = ExitCode.USAGE


def _always_false() -> bool:
    return False


class Patterns:
    """Compiled once; `match` is about a microsecond per path."""

    def __init__(self, patterns: Iterable[str | bytes], ignore_case: bool = False) -> None:
        texts = [os.fsdecode(p) for p in patterns]
        self.ignore_case = ignore_case
        if ignore_case:
            texts = [t.lower() for t in texts]
        self._any = False
        if texts:  # pathspec is imported only where there are patterns: most backups have none
            from pathspec import GitIgnoreSpec
            from pathspec.patterns.gitwildmatch import GitWildMatchPatternError

            try:
                self._spec = GitIgnoreSpec.from_lines(texts)
            except GitWildMatchPatternError as exc:
                raise PatternError(f"not a pattern git's rules can read: {exc}") from None
            self._any = bool(self._spec.patterns)
        # Directory-only patterns ("build/") need to know what a path is.
        self._dir_only = any(t.rstrip().endswith("/") for t in texts)

    def __bool__(self) -> bool:
        return self._any

    def match(self, path: bytes, is_dir: Callable[[], bool] = _always_false) -> bool:
        """Whether absolute `path` is selected; `is_dir` is asked only when
        a directory-only pattern needs it."""
        if not self._any:
            return False
        rel = os.fsdecode(path).lstrip("/")
        if self.ignore_case:
            rel = rel.lower()
        if self._dir_only and is_dir():
            rel += "/"
        return bool(self._spec.match_file(rel))


def any_match(selectors: Iterable[Patterns]) -> Callable[[bytes, Callable[[], bool]], bool] | None:
    """One test for several pattern lists (excludes and case-blind excludes);
    None when they are all empty, so a walk without excludes asks nothing
    per entry."""
    active = [s for s in selectors if s]
    if not active:
        return None

    def match(path: bytes, is_dir: Callable[[], bool] = _always_false) -> bool:
        return any(s.match(path, is_dir) for s in active)

    return match
