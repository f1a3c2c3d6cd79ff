"""mmfs: the MiniMax file platform as a FUSE filesystem."""
