"""Health of an EMRsim deployment: sim server, database, backups, disk, scheduler; alerts."""
