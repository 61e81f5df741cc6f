"""Block-sync (stream 6) node-side state: per-peer download windows and scheduling."""
