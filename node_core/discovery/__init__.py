"""node_core/discovery."""
