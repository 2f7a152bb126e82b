"""evol: an Evol-Instruct data factory."""

__version__ = "0.1.0"
