"""`python -m twenty_jobs.cli`: the same as the `twenty-jobs` command."""

from twenty_jobs.cli.app import main

main()
