"""What several concepts share: reading a post, normalizing what people type, storable text,
the short form cache and the public rate limits (no concept imported here)."""
