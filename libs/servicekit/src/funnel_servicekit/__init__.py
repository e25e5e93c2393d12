"""Funnel's service kit: the reliability core and plumbing, written once for every service."""
