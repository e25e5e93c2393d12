"""The reports: routes, their use cases (reading the aggregates into answers), the queries
(the conversion query among them, in store.py) and the period and answer arithmetic."""
