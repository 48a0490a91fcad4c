"""The metadata server: the filesystem namespace, kept in RADOS objects (DESIGN.md section 7)."""
