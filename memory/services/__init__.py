"""Use cases over the engine: generation, entry operations, purge, roll-up, stats, backup.
Views, admin actions, commands and tasks call these."""
