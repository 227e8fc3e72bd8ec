"""The `twenty-jobs` command line: one module per command group (see app.py). Nothing in the
package imports it."""

from twenty_jobs.cli.app import main

__all__ = ["main"]
