"""`ems bench`: every hot path against a raw floor measured in the same run, on the same data.

Rows live in bench/rows_*.py; each returns `core.Row`s. Data for the large rows is derived from the
real series in data/ (bench/data.py) and cached in the warehouse as tenant `bench`."""
