"""The filesystem core: FileSystem, the write model, spools and their recovery."""
