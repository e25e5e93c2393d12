"""Erasure and each person's data key."""
