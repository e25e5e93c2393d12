"""Tracking: the public links in emails (unsubscribe, open pixel, click redirect)."""
