"""Exact, near and semantic duplicates: the incremental index, and dedup of any dataset file."""
