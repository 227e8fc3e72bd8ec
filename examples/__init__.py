"""Example applications served by twenty-jobs (run from the repository root)."""
