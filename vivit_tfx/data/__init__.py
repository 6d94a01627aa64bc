"""The video data library: reading, sampling, clip records, dataset layouts, ingestion."""
