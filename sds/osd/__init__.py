"""OSD daemon: stores, replicates and serves objects."""
