"""The leads workspace's way to the other services: an allow-listed pass-through, and whoami."""
