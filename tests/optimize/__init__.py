"""Tests of evol.optimize (Auto Evol-Instruct) and the auto profile."""
