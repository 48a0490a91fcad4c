"""CRUSH placement: pure functions from an OSDMap to PG locations."""
