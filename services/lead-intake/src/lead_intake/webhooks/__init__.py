"""Ad platforms and webhooks: signatures, Meta forms, the Meta lead fetcher."""
