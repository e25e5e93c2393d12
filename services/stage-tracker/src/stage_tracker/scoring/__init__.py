"""Lead scoring: signals, fit and decaying engagement points, temperature (pure)."""
