"""Manager daemon: cluster statistics and health."""
