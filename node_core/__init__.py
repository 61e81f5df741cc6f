"""node_core."""
