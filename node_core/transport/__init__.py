"""node_core/transport."""
