"""A person's timeline: everything that happened to them, newest first, from the events."""
