"""Training on a user's table: CSV, gzip CSV or Parquet, named numeric and categorical columns."""
