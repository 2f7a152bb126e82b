"""Tests of evol.quality: reading the judges' answers, scoring."""
