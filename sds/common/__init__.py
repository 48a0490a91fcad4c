"""Shared building blocks: errors, config, logging, messenger, auth."""
