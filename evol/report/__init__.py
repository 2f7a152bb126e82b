"""The run report: statistics read from a run folder, plots, and one self-contained HTML page."""
