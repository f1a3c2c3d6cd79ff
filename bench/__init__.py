"""The benchmark harness behind ``scripts/bench``: mmfs measured side by side with a null FUSE filesystem,
curl, rclone mount and httpdirfs, all on loopback. Not part of the installed package."""
