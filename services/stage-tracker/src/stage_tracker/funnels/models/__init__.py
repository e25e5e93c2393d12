"""Funnel definitions as types and rules (pure): the document, its parsing, the defaults."""
