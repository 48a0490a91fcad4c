"""Native async client library (librados-like)."""
