"""lead-intake's tables (schema `intake`), one module per aggregate; SQL always parameterized."""
