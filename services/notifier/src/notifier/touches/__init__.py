"""Touches: scheduled from events by playbooks, checked again when due, sent once, recorded."""
