"""Tests of evol.output: export formats and choosing rows by score."""
