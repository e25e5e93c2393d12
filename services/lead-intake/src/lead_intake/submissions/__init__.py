"""The public form post: parsing, idempotency, capture of its person."""
