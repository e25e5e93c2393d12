"""Playbooks: what touches a trigger calls for (shipped defaults, and saved ones on top)."""
