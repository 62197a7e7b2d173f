"""Scheduled backups: cron schedules, the APScheduler runner, tick claims, status, install."""
