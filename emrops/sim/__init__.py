"""The EMRsim simulation server: REST + WebSocket over SQLite or PostgreSQL."""
