"""The Iceberg lake: catalog, exactly-once writer, queries."""
