"""Scores and the signals that earn them (pure)."""
