"""Where a run's work runs: this process (local) or Prefect tasks (prefect), over the same round loop."""
