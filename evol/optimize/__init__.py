"""Auto Evol-Instruct: an optimizer model improves the evolving method on the user's seeds."""
