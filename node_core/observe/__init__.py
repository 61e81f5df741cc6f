"""node_core/observe."""
