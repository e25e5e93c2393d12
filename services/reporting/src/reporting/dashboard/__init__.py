"""The dashboard: one static page and its assets, reading the report API."""
