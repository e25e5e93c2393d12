"""The projection: every funnel event into one state per lead and the aggregate tables (the
live consumer and the rebuild command share one use case, service.project)."""
