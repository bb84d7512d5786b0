"""Loading and validating training data (no model, no torch)."""
