"""The SDS filesystem client side: file data striping, the MDS client, the FUSE mount."""
