"""The sds command-line tool."""
