"""Tests of evol.dedup."""
