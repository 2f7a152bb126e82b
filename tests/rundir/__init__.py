"""Tests of evol.rundir: the round spool and the manifest."""
