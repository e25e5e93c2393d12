"""The pure part of reporting: a lead's state, what it contributes to each aggregate, the
arithmetic of the answers. No I/O here."""
