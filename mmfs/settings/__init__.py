"""Settings: every option once, profiles, the configuration a mount runs with."""
