"""Reading judges and scoring rows: the equality verdict, 1-10 scores, and the complexity and quality scorer."""
