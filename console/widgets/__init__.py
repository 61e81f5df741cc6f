"""Console widgets: one module per widget."""
