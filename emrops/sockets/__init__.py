"""WebSocket reliability probing of the sim server (``emrops sockets probe``)."""
