"""Files in and out: the one row schema, catalog readers, export and import."""
