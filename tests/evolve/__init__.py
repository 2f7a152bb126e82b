"""Tests of evol.evolve: the evolver, the answer stage, progress, resuming."""
