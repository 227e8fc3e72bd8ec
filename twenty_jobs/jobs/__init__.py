"""Twenty's jobs ported to Python, one module per Twenty queue.

`twenty-jobs work` imports these unless `--no-builtin-jobs` is given.
"""

BUILTIN_JOB_MODULES: tuple[str, ...] = (
    "twenty_jobs.jobs.webhook",
    "twenty_jobs.jobs.email",
)
