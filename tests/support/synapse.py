"""Fixtures for a real Synapse homeserver on 127.0.0.1 (DESIGN.md §5)."""
