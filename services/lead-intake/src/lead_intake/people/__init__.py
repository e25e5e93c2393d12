"""The people workspace: a person read whole, found (a keyed search index), corrected."""
