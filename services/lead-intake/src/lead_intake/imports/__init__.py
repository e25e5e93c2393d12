"""Bulk import of existing contacts."""
