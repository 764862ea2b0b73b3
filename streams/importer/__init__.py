"""Bulk import and backfill: usage events from JSON Lines, CSV and Parquet files.

::

    sources.py     local file/directory and S3 listing, local copies, content digests
    formats.py     row readers (jsonl, csv, parquet; gzip) -> (row number, event dict)
    checkpoint.py  files done and resume offsets, replaced atomically
    rejects.py     refused rows -> events DLQ (dead letter v1, stage import) or a file
    progress.py    rich progress bar / periodic log line
    run.py         the import loop: read, validate, pack, commit
    args.py        the ``meterstream import`` arguments

See :mod:`streams.importer.run` for the delivery order and the limits of dedup.

Kept free of imports so that building the CLI parser (:mod:`streams.importer.args`) stays
cheap; the API is :mod:`streams.importer.run` (``Importer``, ``ImportOptions``,
``run_import``).
"""
