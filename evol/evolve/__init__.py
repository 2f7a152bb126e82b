"""The method: the evolver (one round for one item), the answer stage, settling, the round loop and its books."""
