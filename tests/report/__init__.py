"""Tests of evol.report."""
