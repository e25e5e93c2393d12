"""Stall timers: leads with no activity past their stage's limit stall, then are lost."""
