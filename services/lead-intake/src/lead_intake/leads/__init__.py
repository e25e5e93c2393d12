"""Leads, their submissions and lead events: the capture every way in shares."""
