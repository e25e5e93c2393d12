"""The work queue: a funnel's leads, filtered, by their score now or their entry, in pages."""
