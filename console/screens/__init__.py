"""Console screens: one module per view or modal."""
