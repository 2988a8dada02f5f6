"""Datasets: import jobs (CSV drops → versioned Parquet snapshots), the Dataset object, sources."""
