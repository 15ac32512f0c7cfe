"""Sample indexes and the official ABAW4 file formats (readers and submission writers)."""
