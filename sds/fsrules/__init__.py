"""The filesystem rules the MDS and its clients both apply: POSIX permission checks,
SETATTR semantics, the root inode and how file data is named and striped. Both sides
import them from here, so neither the MDS nor a client imports the other."""
