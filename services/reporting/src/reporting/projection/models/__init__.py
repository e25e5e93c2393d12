"""The pure part of the projection: what reporting remembers about one lead, the order of its
stage entries, and what it contributes to each aggregate. No I/O here."""
