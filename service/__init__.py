"""What api/ and workers/ share: settings, database, job lifecycle, metrics, keys, storage."""
