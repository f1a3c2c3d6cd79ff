"""Commands: the command line, its parser, the commands that talk to a running mount."""
