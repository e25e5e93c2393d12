"""Moves of leads between stages: the stage machine, manual and timer moves, the journey."""
