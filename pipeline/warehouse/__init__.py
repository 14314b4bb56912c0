"""The warehouse schema: numbered migrations and the command that applies them."""
