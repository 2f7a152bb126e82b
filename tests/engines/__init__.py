"""Tests of evol.engines: the Prefect engine against the plain one."""
