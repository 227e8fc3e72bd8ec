"""twenty-jobs: Python workers and producers on the Redis keys of Twenty CRM's BullMQ queues.

    import twenty_jobs

    @twenty_jobs.job(queue="workspace-queue", name="SomeJob")
    async def some_job(data: SomeModel, ctx: twenty_jobs.JobContext) -> None: ...

Run handlers with `twenty-jobs work --import my_module`; enqueue with `twenty_jobs.Producer`.
"""

from twenty_jobs.errors import ConfigError, PermanentJobError, RetryJob, TwentyJobsError
from twenty_jobs.runtime.context import JobContext
from twenty_jobs.runtime.lifecycle import WorkerContext
from twenty_jobs.runtime.producer import BulkItem, Producer
from twenty_jobs.runtime.registry import Registry, default_registry, job, on_shutdown, on_startup
from twenty_jobs.twenty.options import Backoff, JobOptions

__version__ = "0.1.0"

# Twenty's name for the producer side (MessageQueueService); an alias for readers of Twenty's code.
MessageQueue = Producer

__all__ = [
    "Backoff",
    "BulkItem",
    "ConfigError",
    "JobContext",
    "JobOptions",
    "MessageQueue",
    "PermanentJobError",
    "Producer",
    "Registry",
    "RetryJob",
    "TwentyJobsError",
    "WorkerContext",
    "__version__",
    "default_registry",
    "job",
    "on_shutdown",
    "on_startup",
]
