"""CallWebhookJob batches for the `webhook` scenario, written through `twenty_jobs.Producer`.

What Twenty's CallWebhookJobsJob enqueues (docs/webhook-email.md): `CallWebhookJob` jobs whose
data is a list of 20 payloads, `retryLimit: 3` and webhook-queue's priority; each payload has
Twenty's keys in Twenty's order (`targetUrl, eventName, objectMetadata, workspaceId, webhookId,
eventDate, userId, workspaceMemberId, record, secret`), the record being a person as Twenty's
REST API shows it.
"""

from __future__ import annotations

import uuid
from typing import Any

import twenty_jobs
from benchmarks.job_names import WEBHOOK_JOB

PAYLOADS_PER_JOB = 20  # WEBHOOK_JOBS_CHUNK_SIZE
RETRY_LIMIT = 3  # CallWebhookJobsJob's add(..., {retryLimit: 3})
BULK = 100  # jobs per add_bulk round trip


def person_record(n: int) -> dict[str, Any]:
    record_id = str(uuid.uuid4())
    return {
        "id": record_id,
        "name": {"firstName": f"Ada{n}", "lastName": "Lovelace"},
        "emails": {"primaryEmail": f"ada{n}@example.com", "additionalEmails": None},
        "linkedinLink": {"primaryLinkUrl": "", "primaryLinkLabel": "", "secondaryLinks": []},
        "xLink": {"primaryLinkUrl": "", "primaryLinkLabel": "", "secondaryLinks": []},
        "jobTitle": "Engineer",
        "phones": {"primaryPhoneNumber": "", "primaryPhoneCountryCode": "FR", "primaryPhoneCallingCode": "+33",
                   "additionalPhones": None},
        "city": "Paris",
        "avatarUrl": "",
        "position": n,
        "createdBy": {"source": "MANUAL", "workspaceMemberId": None, "name": "System", "context": {}},
        "createdAt": "2026-11-30T12:00:00.000Z",
        "updatedAt": "2026-11-30T12:00:00.000Z",
        "deletedAt": None,
        "companyId": None,
    }


def batch(target_url: str, secret: str, workspace_id: str, webhook_id: str, first: int) -> list[dict[str, Any]]:
    """One CallWebhookJob's data: 20 signed `person.created` payloads."""
    return [
        {
            "targetUrl": target_url,
            "eventName": "person.created",
            "objectMetadata": {"id": "0c8c5a39-8d4f-4a4b-9f46-4b7f6a1f9e10", "nameSingular": "person"},
            "workspaceId": workspace_id,
            "webhookId": webhook_id,
            "eventDate": "2026-11-30T12:00:00.000Z",
            "userId": "5f9f2b1e-3c5d-4b8a-9f0e-2d6c7a8b9c01",
            "workspaceMemberId": "7e1d2c3b-4a5f-4e6d-8c7b-9a0f1e2d3c4b",
            "record": person_record(first + i),
            "secret": secret,
        }
        for i in range(PAYLOADS_PER_JOB)
    ]


async def prefill(redis_url: str, prefix: str, queue: str, jobs: int, target_url: str, secret: str) -> int:
    """Add `jobs` CallWebhookJob jobs the way Twenty's CallWebhookJobsJob does; returns how many."""
    workspace_id, webhook_id = str(uuid.uuid4()), str(uuid.uuid4())
    added = 0
    async with twenty_jobs.Producer(redis_url, prefix=prefix) as producer:
        while added < jobs:
            n = min(BULK, jobs - added)
            items = [batch(target_url, secret, workspace_id, webhook_id, (added + k) * PAYLOADS_PER_JOB)
                     for k in range(n)]
            added += len(await producer.add_bulk(queue, WEBHOOK_JOB, items, retry_limit=RETRY_LIMIT))
    return added
