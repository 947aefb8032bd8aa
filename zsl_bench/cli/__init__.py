"""Command-line interface: one small module per command group, heavy imports inside handlers."""
