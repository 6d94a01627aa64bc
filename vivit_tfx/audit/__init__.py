"""ML Metadata tools: run queries, lineage, TFMA results, the HTML run report."""
