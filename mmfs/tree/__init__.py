"""Files to paths: the namespace, its names and the sizes it shows."""
