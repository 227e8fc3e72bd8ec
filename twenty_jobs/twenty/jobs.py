"""Twenty's job names on the queues twenty-jobs shares with Twenty's Node worker.

Twenty's job name is its processor class name (docs/twenty-queues.md). Which of them twenty-jobs
ports (twenty_jobs/jobs/), and which others Twenty's Node worker runs on the same queues
(docs/shared-queues.md, "Job names"). Twenty's full list per queue is not known here, so a name
Python registers on a Twenty queue that is not a ported Twenty job is taken to be Python's own:
Twenty's Node worker has no handler for it and, sharing the queue, would complete it unrun.
"""

from __future__ import annotations

from collections.abc import Iterable

from twenty_jobs.twenty.queues import KNOWN_QUEUES

# Twenty's jobs that twenty-jobs runs itself (jobs/webhook.py, jobs/email.py).
PORTED_JOBS: dict[str, frozenset[str]] = {
    "webhook-queue": frozenset({"CallWebhookJobsJob", "CallWebhookJob", "CallWebhookJobsForMetadataJob"}),
    "email-queue": frozenset({"EmailSenderJob"}),
}

# Twenty's other jobs on those queues, run only by Twenty's Node worker: the connected-account
# push subscriptions (modules/connected-account/webhook-subscription-manager/jobs/) and, on newer
# Twenty, the campaign e-mail jobs.
NODE_ONLY_JOBS: dict[str, frozenset[str]] = {
    "webhook-queue": frozenset({
        "CreateWebhookSubscriptionJob", "RenewWebhookSubscriptionJob", "RevokeWebhookSubscriptionJob",
        "SyncWorkspaceWebhookSubscriptionsJob", "CallMessageReceivedWebhookJob",
    }),
    "email-queue": frozenset({"SendCampaignEmailJob", "AttributeCampaignReplyJob"}),
}


def python_only_names(queue: str, names: Iterable[str]) -> list[str]:
    """The names among `names` on Twenty queue `queue` that Twenty's Node worker has no handler
    for (every name but the ported Twenty jobs); [] for a queue that is not Twenty's."""
    if queue not in KNOWN_QUEUES:
        return []
    twenty = PORTED_JOBS.get(queue, frozenset()) | NODE_ONLY_JOBS.get(queue, frozenset())
    return sorted(n for n in set(names) if n not in twenty)


def known_job_names(queue: str) -> frozenset[str]:
    """The job names of Twenty's that twenty-jobs knows on `queue` (ported or Node-only)."""
    return PORTED_JOBS.get(queue, frozenset()) | NODE_ONLY_JOBS.get(queue, frozenset())
