"""Leak alerts: each funnel step watched against its own trailing baseline."""
