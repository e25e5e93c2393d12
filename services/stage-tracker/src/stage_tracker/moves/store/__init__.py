"""The lead tables, and the leads one transaction reads and writes (LeadBatch)."""
