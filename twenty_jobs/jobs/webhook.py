"""Twenty's `webhook-queue`, in Python: CallWebhookJobsJob and CallWebhookJob.

What Twenty does (docs/webhook-email.md; call-webhook-jobs.job.ts,
transform-event-batch-to-webhook-events.ts @ 0386428f, call-webhook.job.ts):
* `CallWebhookJobsJob` gets an event batch `{name: "<object>.<operation>", workspaceId,
  objectMetadata, events}`, finds the workspace's webhooks subscribed to `obj.op`, `*.op`,
  `obj.*` or `*.*`, builds one payload per webhook x event and enqueues `CallWebhookJob` jobs of
  20 payloads each with `retryLimit: 3`.
* `CallWebhookJobsForMetadataJob` (newer Twenty, call-webhook-jobs-for-metadata.job.ts @ 74705518)
  does the same for metadata events (`metadata.<name>.<type>`), payloads carrying the `event`.
* `CallWebhookJob` POSTs every payload (without its `secret`) as JSON, signed with
  HMAC-SHA256 over `<timestamp>:<body>` when the webhook has a secret, with a 5 s timeout.

Where this port differs, on purpose (see docs/webhook-email.md):
* Twenty swallows every delivery error, so its `retryLimit: 3` never fires. Here transient
  failures (connect errors, DNS failures, timeouts, HTTP 408, 429 and 5xx) fail the attempt and
  are retried after an exponential backoff, and the job data is first cut down to the payloads
  that still have to go, so an endpoint that accepted a payload never gets it again from a retry.
* Other answers (4xx, too many redirects, a refused internal address, an invalid URL) are final
  for that payload: logged and counted as failed, not retried. A job whose payloads are all
  delivered or finally refused completes; its return value describes the attempt that completed
  it, and every attempt's failures are appended to the job's log list.
* Current Twenty gates each batch (record access, webhook rate limit); the port delivers a batch
  only where it can show the gate admits all of it, and hands it back otherwise
  (jobs/webhook_gate.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from opentelemetry import metrics
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    RootModel,
    ValidatorFunctionWrapHandler,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, SettingsConfigDict

import twenty_jobs
from twenty_jobs.errors import HandOffJob, PermanentJobError, RetryJob
from twenty_jobs.jobs import db
from twenty_jobs.jobs import outbound as _outbound
from twenty_jobs.jobs.config import load
from twenty_jobs.jobs.webhook_gate import webhook_gate
from twenty_jobs.runtime.context import JobContext
from twenty_jobs.settings import redacted_url
from twenty_jobs.twenty import jsonjs

QUEUE = "webhook-queue"
# WEBHOOK_JOBS_CHUNK_SIZE and the retryLimit of CallWebhookJobsJob's add (call-webhook-jobs.job.ts).
CHUNK_SIZE = 20
CALL_WEBHOOK_RETRY_LIMIT = 3
# A Retry-After longer than this is not honoured in full.
MAX_RETRY_DELAY_MS = 10 * 60 * 1000
# What Twenty records when its secure client refuses the target (call-webhook.job.ts).
BLOCKED_ERROR = "Webhook URL resolves to a private/internal IP address"
USER_AGENT = f"twenty-jobs/{twenty_jobs.__version__}"

log = logging.getLogger("twenty_jobs.jobs.webhook")


class WebhookSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    # Twenty hard-codes `timeout: 5_000`; configurable here (tests, slow receivers).
    timeout_ms: int = Field(default=5000, alias="WEBHOOK_TIMEOUT_MS", gt=0)
    # First retry delay; doubled for each later attempt (5 s, 10 s, 20 s with retryLimit 3), like
    # Twenty's exponential EMAIL_SEND_RETRY_BACKOFF of 5000 ms.
    retry_delay_ms: int = Field(default=5000, alias="WEBHOOK_RETRY_DELAY_MS", ge=0)


# -- payload models ------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, validate_by_alias=True,
                              extra="allow")


class ObjectMetadataRef(_Model):
    id: str
    name_singular: str


class EventProperties(_Model):
    """`ObjectRecordEvent.properties` (twenty-shared database-events). Values are kept as stored."""

    before: Any = None
    after: Any = None
    updated_fields: list[str] | None = None


class ObjectRecordEvent(_Model):
    record_id: str
    user_id: str | None = None
    workspace_member_id: str | None = None
    properties: EventProperties = Field(default_factory=EventProperties)


class WorkspaceEventBatch(_Model):
    """CallWebhookJobsJob's data: WorkspaceEventBatchForWebhook (workspace-event-batch-for-webhook.type.ts)."""

    name: str = Field(min_length=1)
    workspace_id: str = Field(min_length=1)
    object_metadata: ObjectMetadataRef
    events: list[ObjectRecordEvent]


class MetadataEventBatch(_Model):
    """CallWebhookJobsForMetadataJob's data (metadata-event-batch.type.ts @ 78bf5473); events are
    opaque MetadataEvent objects, sent as stored."""

    name: str = Field(min_length=1)
    workspace_id: str = Field(min_length=1)
    metadata_name: str
    type: str
    events: list[Any]
    user_id: str | None = None
    api_key_id: str | None = None


class CallWebhookJobData(_Model):
    """One payload of CallWebhookJob (webhook-job-data.type.ts @ 41d24255).

    Validation checks the fields the job needs; the payload that is sent and signed is the item
    exactly as stored (`raw`), every key in its stored order, so fields this model does not know
    (apiKeyId, applicationId, a metadata `event`) are sent and signed as Twenty would.
    """

    target_url: str
    event_name: str
    workspace_id: str
    webhook_id: str
    event_date: str | None = None
    user_id: str | None = None
    secret: str | None = None
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_raw(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        model = handler(data)
        if isinstance(data, dict) and isinstance(model, CallWebhookJobData):
            model._raw = data
        return model

    @property
    def raw(self) -> dict[str, Any]:
        return self._raw

    def payload_without_secret(self) -> dict[str, Any]:
        """`const { secret, ...payloadWithoutSecret } = data`."""
        return {k: v for k, v in self._raw.items() if k != "secret"}

    def __repr__(self) -> str:  # never show the secret
        return f"CallWebhookJobData(webhook_id={self.webhook_id!r}, event_name={self.event_name!r})"

    __str__ = __repr__


class CallWebhookJobItems(RootModel[list[CallWebhookJobData]]):
    """CallWebhookJob's data: an array of payloads (older Twenty versions: one payload object)."""

    @model_validator(mode="before")
    @classmethod
    def _as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value


# -- CallWebhookJobsJob --------------------------------------------------------------------------


# Events that only exact subscriptions receive, never `*.op`, `obj.*` or `*.*`
# (compute-webhook-operations-to-match.util.ts, docs/webhook-email.md).
WILDCARD_EXCLUDED_EVENT_NAMES = frozenset({"workflowRun.updated"})


def operations_to_match(event_name: str) -> list[str]:
    """`obj.op`, `*.op`, `obj.*`, `*.*` for the batch name `obj.op` (JS split semantics); only
    `obj.op` for the events excluded from wildcards."""
    parts = event_name.split(".")
    name_singular = parts[0]
    operation = parts[1] if len(parts) > 1 else "undefined"  # `${undefined}` in a JS template
    exact = f"{name_singular}.{operation}"
    if exact in WILDCARD_EXCLUDED_EVENT_NAMES:
        return [exact]
    return [exact, f"*.{operation}", f"{name_singular}.*", "*.*"]


def js_iso_now() -> str:
    """`new Date()` as BullMQ stores it: Date.prototype.toJSON, millisecond precision, `Z`."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def event_record(batch: WorkspaceEventBatch, event: ObjectRecordEvent) -> Any:
    """transform-event-to-webhook-event.ts: `after` if defined, else `before`, else `{}`; a
    `webhook` record loses its `secret` (remove-secret-from-webhook-record)."""
    props = event.properties
    if props.after is not None:
        record = props.after
    elif props.before is not None:
        record = props.before
    else:
        record = {}
    if batch.name.split(".")[0] == "webhook" and isinstance(record, dict):
        record = {k: v for k, v in record.items() if k != "secret"}
    return record


def build_payloads(batch: WorkspaceEventBatch, webhooks: Sequence[db.Webhook]) -> list[dict[str, Any]]:
    """transformEventBatchToWebhookEvents: one payload per webhook x event, keys in Twenty's order.

    Keys whose JS value would be `undefined` (an event without userId, say) are left out, as
    JSON.stringify leaves them out when BullMQ stores the job.
    """
    result: list[dict[str, Any]] = []
    object_metadata = {"id": batch.object_metadata.id, "nameSingular": batch.object_metadata.name_singular}
    for webhook in webhooks:
        event_date = js_iso_now()  # one `new Date()` per webhook, as in Twenty's outer loop
        for event in batch.events:
            payload: dict[str, Any] = {
                "targetUrl": webhook.target_url,
                "eventName": batch.name,
                "objectMetadata": dict(object_metadata),
                "workspaceId": batch.workspace_id,
                "webhookId": webhook.id,
                "eventDate": event_date,
            }
            if "user_id" in event.model_fields_set:
                payload["userId"] = event.user_id
            if "workspace_member_id" in event.model_fields_set:
                payload["workspaceMemberId"] = event.workspace_member_id
            payload["record"] = event_record(batch, event)
            # `...(updatedFields && { updatedFields })`: present unless null/undefined ([] is truthy).
            if event.properties.updated_fields is not None:
                payload["updatedFields"] = event.properties.updated_fields
            payload["secret"] = webhook.secret
            result.append(payload)
    return result


def metadata_operations_to_match(batch: MetadataEventBatch) -> list[str]:
    return [batch.name, f"metadata.{batch.metadata_name}.*", f"metadata.*.{batch.type}", "metadata.*.*", "*.*"]


def build_metadata_payloads(batch: MetadataEventBatch, webhooks: Sequence[db.Webhook]) -> list[dict[str, Any]]:
    """transformMetadataEventBatchToWebhookEvents: keys in Twenty's order, `new Date()` per payload."""
    result: list[dict[str, Any]] = []
    for webhook in webhooks:
        for event in batch.events:
            payload: dict[str, Any] = {
                "targetUrl": webhook.target_url,
                "eventName": batch.name,
                "workspaceId": batch.workspace_id,
                "webhookId": webhook.id,
                "eventDate": js_iso_now(),
            }
            if "user_id" in batch.model_fields_set:
                payload["userId"] = batch.user_id
            if "api_key_id" in batch.model_fields_set:
                payload["apiKeyId"] = batch.api_key_id
            payload["secret"] = webhook.secret
            payload["event"] = event
            result.append(payload)
    return result


def chunked(items: Sequence[Any], size: int = CHUNK_SIZE) -> list[list[Any]]:
    """lodash.chunk."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


async def _matching_webhooks(ctx: JobContext, workspace_id: str, operations: list[str]) -> list[db.Webhook]:
    try:
        return await db.webhooks_for(workspace_id, operations)
    except db.DatabaseError as exc:
        # Twenty's database is down or misconfigured: retry later, not at once.
        raise RetryJob(str(exc), delay_ms=backoff_ms(load(WebhookSettings), ctx.attempt)) from None


async def _enqueue_calls(ctx: JobContext, event_name: str, webhooks: int, payloads: list[dict[str, Any]]
                         ) -> dict[str, Any]:
    """`add('CallWebhookJob', chunk, {retryLimit: 3})` per chunk of 20, in one round trip."""
    job_ids = await ctx.producer.add_bulk(QUEUE, "CallWebhookJob", chunked(payloads),
                                          retry_limit=CALL_WEBHOOK_RETRY_LIMIT)
    ctx.logger.info("%s: %d webhook(s), %d payload(s) in %d CallWebhookJob job(s)",
                    event_name, webhooks, len(payloads), len(job_ids))
    return {"webhooks": webhooks, "payloads": len(payloads), "jobs": job_ids}


@twenty_jobs.job(queue=QUEUE, name="CallWebhookJobsJob")
async def call_webhook_jobs(batch: WorkspaceEventBatch, ctx: JobContext) -> dict[str, Any]:
    webhooks = await _matching_webhooks(ctx, batch.workspace_id, operations_to_match(batch.name))
    if not webhooks:
        return {"webhooks": 0, "payloads": 0, "jobs": []}
    await _check_gate(ctx, batch)
    return await _enqueue_calls(ctx, batch.name, len(webhooks), build_payloads(batch, webhooks))


async def _check_gate(ctx: JobContext, batch: WorkspaceEventBatch) -> None:
    """Hand the batch back when current Twenty's record access gate or webhook rate limit could
    withhold any of its records (jobs/webhook_gate.py)."""
    try:
        verdict = await webhook_gate(batch.workspace_id, batch.object_metadata.id)
    except db.DatabaseError as exc:
        raise RetryJob(str(exc), delay_ms=backoff_ms(load(WebhookSettings), ctx.attempt)) from None
    if not verdict.deliverable:
        raise HandOffJob(
            f"{batch.name} batch for workspace {batch.workspace_id} not delivered by the Python port: "
            f"{verdict.reason}; Twenty's Node worker must deliver it (run twenty-jobs with "
            "--unknown-jobs leave beside it)"
        )


@twenty_jobs.job(queue=QUEUE, name="CallWebhookJobsForMetadataJob")
async def call_webhook_jobs_for_metadata(batch: MetadataEventBatch, ctx: JobContext) -> dict[str, Any]:
    webhooks = await _matching_webhooks(ctx, batch.workspace_id, metadata_operations_to_match(batch))
    if not webhooks:
        return {"webhooks": 0, "payloads": 0, "jobs": []}
    return await _enqueue_calls(ctx, batch.name, len(webhooks), build_metadata_payloads(batch, webhooks))


# -- CallWebhookJob ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one payload: what Twenty records as its "Webhook Response" event, plus
    whether a retry could change it."""

    item: CallWebhookJobData
    url: str
    success: bool
    transient: bool
    status: int | None = None
    error: str | None = None
    retry_after_ms: int | None = None

    def record(self) -> dict[str, Any]:
        """`{status?, success, url, webhookId, eventName, error?}` (Twenty's WEBHOOK_RESPONSE_EVENT)."""
        out: dict[str, Any] = {}
        if self.status is not None:
            out["status"] = self.status
        out.update(success=self.success, url=self.url, webhookId=self.item.webhook_id,
                   eventName=self.item.event_name)
        if self.error is not None:
            out["error"] = self.error
        return out


def ensure_absolute_url(value: str) -> str:
    """twenty-shared `ensureAbsoluteUrl`: trimmed, `https://` prefixed unless it starts with
    http:// or https:// (lower or upper case)."""
    trimmed = value.strip()
    if trimmed.startswith(("http://", "https://", "HTTP://", "HTTPS://")):
        return trimmed
    return f"https://{trimmed}"


def sign(secret: str, timestamp: str, body: str) -> str:
    """Lowercase hex HMAC-SHA256 of `<timestamp>:<body>`, keyed with the secret's UTF-8 bytes."""
    return hmac.new(secret.encode(), f"{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()


def request_headers(secret: str | None, body: str) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/plain, */*",  # axios' default, which Twenty sends
        "User-Agent": USER_AGENT,
    }
    if secret:
        timestamp = str(int(time.time() * 1000))
        headers["X-Twenty-Webhook-Timestamp"] = timestamp
        headers["X-Twenty-Webhook-Signature"] = sign(secret, timestamp, body)
        headers["X-Twenty-Webhook-Nonce"] = secrets.token_hex(16)
    return headers


def is_transient_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


def _retry_after_ms(value: str | None) -> int | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value) * 1000
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0, int((when - datetime.now(UTC)).total_seconds() * 1000))


async def deliver(
    client: httpx.AsyncClient,
    item: CallWebhookJobData,
    outbound: _outbound.OutboundSettings,
    timeout_s: float,
) -> Delivery:
    """Send one payload; never raises (except cancellation)."""
    url = ensure_absolute_url(item.target_url)
    shown = redacted_url(url)
    body = jsonjs.stringify(item.payload_without_secret())
    headers = request_headers(item.secret, body)

    def failed(transient: bool, error: str, status: int | None = None, retry_after: int | None = None) -> Delivery:
        return Delivery(item, shown, False, transient, status, error, retry_after)

    try:
        async with asyncio.timeout(timeout_s):
            response = await _outbound.send(client, url, body.encode(), headers, outbound)
    except _outbound.OutboundBlocked:
        return failed(False, BLOCKED_ERROR)
    except _outbound.InvalidTarget as exc:
        return failed(False, str(exc))
    except _outbound.ResolutionFailed as exc:
        return failed(True, str(exc))
    except (TimeoutError, httpx.TimeoutException):
        return failed(True, f"timed out after {int(timeout_s * 1000)} ms")
    except httpx.TransportError as exc:
        return failed(True, f"{type(exc).__name__}: {_one_line(exc)}")
    except httpx.HTTPError as exc:
        return failed(False, f"{type(exc).__name__}: {_one_line(exc)}")
    except Exception as exc:  # a bug here must not lose the other payloads' outcomes
        log.exception("unexpected error delivering webhook %s", item.webhook_id)
        return failed(True, f"{type(exc).__name__}: {_one_line(exc)}")
    status = response.status
    if 200 <= status < 300:
        return Delivery(item, shown, True, False, status)
    if is_transient_status(status):
        return failed(True, f"HTTP {status}", status, _retry_after_ms(response.retry_after))
    return failed(False, f"HTTP {status}", status)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def backoff_ms(settings: WebhookSettings, attempt: int, retry_after_ms: int | None = None) -> int:
    """retry_delay * 2^(attempt-1), or the receiver's Retry-After when longer (capped)."""
    delay = settings.retry_delay_ms * (1 << max(0, attempt - 1))
    if retry_after_ms is not None:
        delay = max(delay, retry_after_ms)
    return min(delay, MAX_RETRY_DELAY_MS)


# Injected by tests (an SDK MeterProvider with an in-memory reader); else the global provider.
meter_provider: metrics.MeterProvider | None = None
_instruments: dict[int, tuple[metrics.Counter, metrics.Counter]] = {}


def _counters() -> tuple[metrics.Counter, metrics.Counter]:
    provider = meter_provider or metrics.get_meter_provider()
    found = _instruments.get(id(provider))
    if found is None:
        # Meter `twenty-server` and Twenty's MetricsKeys.JobWebhookCallCompleted, counted on
        # success as Twenty does; failures get their own counter so dashboards keep their meaning.
        meter = metrics.get_meter("twenty-server", meter_provider=provider)
        found = (
            meter.create_counter("job/webhook-call-completed", description="Webhook calls answered 2xx"),
            meter.create_counter("job/webhook-call-failed", description="Webhook calls that failed"),
        )
        _instruments[id(provider)] = found
    return found


def _record(ctx: JobContext, delivery: Delivery) -> None:
    completed, failed = _counters()
    if delivery.success:
        completed.add(1)
    else:
        kind = "transient" if delivery.transient else "final"
        failed.add(1, {"kind": kind, "status": str(delivery.status or "none")})
    fields = delivery.record()
    level = logging.INFO if delivery.success else logging.WARNING
    ctx.logger.log(
        level,
        "Webhook Response: %s",
        " ".join(f"{k}={v}" for k, v in fields.items()),
        extra={"webhook_response": fields},
    )


def _summary(deliveries: Sequence[Delivery], limit: int = 3) -> str:
    shown = "; ".join(f"{d.error} from {d.url} (webhook {d.item.webhook_id})" for d in deliveries[:limit])
    more = len(deliveries) - limit
    return shown + (f"; and {more} more" if more > 0 else "")


@twenty_jobs.job(queue=QUEUE, name="CallWebhookJob")
async def call_webhook(data: CallWebhookJobItems, ctx: JobContext) -> dict[str, Any]:
    items = data.root
    settings = load(WebhookSettings)
    outbound = load(_outbound.OutboundSettings)
    timeout_s = settings.timeout_ms / 1000
    if not items:
        return {"attempt": ctx.attempt, "delivered": 0, "rejected": []}
    async with _outbound.new_client(timeout_s, outbound) as client:
        # All payloads at once, as Twenty's Promise.all does.
        deliveries = await asyncio.gather(*(deliver(client, it, outbound, timeout_s) for it in items))
    for delivery in deliveries:
        _record(ctx, delivery)
    delivered = sum(1 for d in deliveries if d.success)
    rejected = [d for d in deliveries if not d.success and not d.transient]
    pending = [d for d in deliveries if d.transient]
    if rejected or pending:
        # The job's log list (bull-board, Node's getJobLogs) keeps every attempt's failures; the
        # return value only describes the attempt that completed the job.
        await ctx.log(
            f"attempt {ctx.attempt}: {delivered} delivered; refused for good: "
            f"{_summary(rejected, CHUNK_SIZE) or 'none'}; to retry: {_summary(pending, CHUNK_SIZE) or 'none'}"
        )
    if pending:
        # Keep only what still has to go: a retry must not re-send accepted payloads.
        remaining = [d.item.raw for d in pending]
        single_object = isinstance(ctx.data, dict)
        await ctx.update_data(remaining[0] if single_object and len(remaining) == 1 else remaining)
        message = (
            f"{len(pending)} of {len(deliveries)} webhook deliveries failed and will be retried "
            f"({delivered} delivered, {len(rejected)} refused for good): {_summary(pending)}"
        )
        if ctx.is_last_attempt:
            raise PermanentJobError(
                f"giving up after {ctx.attempt} attempt(s): {len(pending)} webhook deliveries failed: "
                f"{_summary(pending)}"
            )
        retry_after = max((d.retry_after_ms or 0 for d in pending), default=0) or None
        raise RetryJob(message, delay_ms=backoff_ms(settings, ctx.attempt, retry_after))
    return {
        "attempt": ctx.attempt,
        "delivered": delivered,
        "rejected": [d.record() for d in rejected],
    }
