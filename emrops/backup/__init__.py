"""Backups of the EMRsim database: snapshot, store, verify, rotate, restore, copy.

One module per concern; the CLI layer (``emrops.cli.backup``) only parses and prints.
Store layout (local folder or Azure prefix), one folder per backup id::

    <id>/manifest.json       written last: a backup without it does not exist
    <id>/database.zst[.age]  the SQLite image or pg_dump custom archive, zstd (+ age)
    <id>/globals.sql.zst     PostgreSQL roles (pg_dumpall --globals-only), when permitted
    <id>/verification.json   the last verification results (time, result, checks)
    <id>/pin.json            present while the backup is pinned
    .lock                    the store lock (holder host and pid)
"""
