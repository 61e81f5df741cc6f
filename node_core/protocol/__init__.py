"""node_core/protocol."""
