"""Tests of evol.rules: each elimination rule, refusals and wrappers, the registry."""
