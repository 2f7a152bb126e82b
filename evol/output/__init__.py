"""Finished runs to training files: row selection, formats, preference pairs and the dataset card."""
