"""The doors to the core: the FUSE adapter and the WebDAV provider."""
