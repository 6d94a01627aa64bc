"""ML Metadata tools: run queries, lineage, TFMA results, a run's summary and HTML report."""
