"""Tests of evol.cli."""
