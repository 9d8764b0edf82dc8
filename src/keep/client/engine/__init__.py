"""The backup, restore and prune engine: what turns a tree into packs, index
and snapshots on keep-server and back (docs/engine.md). Its results are
values (paths, counts, `PathWarning`s); it prints nothing and knows no
device files — the CLI and the admin page drive it. The planners
(`restore_plan`, `prune_plan`, `retention`, `locations`) decide from plain
values and do no I/O."""
