"""Funnel definitions: the documents people write, their parsing, versions and registry."""
