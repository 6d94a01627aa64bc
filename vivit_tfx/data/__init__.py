"""The video data library: reading, sampling, clip records, dataset layouts, ingestion, and
preparing a run's clips (`prepare.py`)."""
