"""Running a mount or a server: assembling the layers, the control socket, daemon and service."""
