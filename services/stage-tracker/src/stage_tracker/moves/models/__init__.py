"""The stage machine and the commands and events around it (pure)."""
