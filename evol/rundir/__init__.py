"""The run folder: one writer, atomic files, the round spool, the manifest, and a finished run read back."""
