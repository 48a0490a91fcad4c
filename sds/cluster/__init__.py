"""Local clusters of real daemon processes (like vstart.sh)."""
