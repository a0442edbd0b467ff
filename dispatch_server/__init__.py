"""Field-operations and video dispatch server for a court enforcement command centre."""
