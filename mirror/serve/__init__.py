"""`mirror serve`: layouts, archives and bundles served in place as a read-only (or, for one
layout, writable) registry speaking the pull side of the OCI distribution spec 1.1."""
