"""State on disk: pairings (TOML) and the transaction journal (SQLite)."""
