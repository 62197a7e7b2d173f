"""Blue-green deployment of the sim server to App Service slots: push, swap, rollback."""
