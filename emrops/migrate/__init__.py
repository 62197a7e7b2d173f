"""SQLite -> PostgreSQL migration: reflect, profile, map, copy, verify, journal, rollback."""
