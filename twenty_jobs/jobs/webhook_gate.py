"""Whether the Python webhook port may deliver a batch that current Twenty would gate.

Current Twenty runs every `CallWebhookJobsJob` batch through a record access gate and, on
workspaces with the feature flag, a webhook rate limit (docs/webhook-email.md, "CallWebhookJobsJob"):
events whose records the standard application's default role may not read are dropped (object
readability, row-level permission predicates, record shares), and events beyond the workspace's
webhook budget are dropped. The port does not reimplement role evaluation; it delivers a batch only
where it can show that Twenty's gate admits every record of it, and otherwise hands the batch back
(`HandOffJob`: left for Twenty's Node worker with `--unknown-jobs leave`, failed with the reason
otherwise). It never delivers a record Twenty would withhold.

The port can decide when, for the batch's workspace and object:
* neither `IS_RECORD_SHARING_ENABLED` nor `IS_WEBHOOK_RATE_LIMIT_ENABLED` is on (`core.featureFlag`);
* the object's readability is `OPEN` (`core.objectMetadata.readability`; SYSTEM objects are
  always denied, PRIVATE and INHERITED ones depend on ownership and shares);
* no row-level permission predicate applies to the object (`core.rowLevelPermissionPredicate`);
* no role is denied reading the object's records (`core.objectPermission.canReadObjectRecords`).
A Twenty without these tables or columns (around 1.14) has no gate: the batch is delivered as
that Twenty would.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from twenty_jobs.jobs import db

RECORD_SHARING_FLAG = "IS_RECORD_SHARING_ENABLED"
WEBHOOK_RATE_LIMIT_FLAG = "IS_WEBHOOK_RATE_LIMIT_ENABLED"
OPEN_READABILITY = "OPEN"


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """`reason` is None when the port may deliver the whole batch; else it names the feature."""

    reason: str | None

    @property
    def deliverable(self) -> bool:
        return self.reason is None


async def webhook_gate(
    workspace_id: str, object_metadata_id: str, *, settings: db.DatabaseSettings | None = None
) -> GateVerdict:
    """Decide for one batch (one workspace, one object)."""
    settings = settings or db.load_database_settings()
    try:
        UUID(workspace_id)
        UUID(object_metadata_id)
    except ValueError:
        return GateVerdict(None)  # no core row can match a non-uuid id: nothing gates it
    schema = settings.core_schema.replace('"', '""')
    engine = db.get_engine(settings)
    try:
        async with engine.connect() as conn:
            columns = await _columns(conn, settings.core_schema)
            ids = {"ws": workspace_id, "obj": object_metadata_id}
            if {("featureFlag", "key"), ("featureFlag", "value"), ("featureFlag", "workspaceId")} <= columns:
                rows = await conn.execute(text(
                    f'SELECT key FROM "{schema}"."featureFlag" WHERE "workspaceId" = CAST(:ws AS uuid) '
                    "AND key IN (:sharing, :rate) AND value = true ORDER BY key"
                ), {**ids, "sharing": RECORD_SHARING_FLAG, "rate": WEBHOOK_RATE_LIMIT_FLAG})
                flags = [row[0] for row in rows]
                if flags:
                    what = " and ".join(
                        "record sharing" if f == RECORD_SHARING_FLAG else "the webhook rate limit" for f in flags
                    )
                    return GateVerdict(f"{what} ({', '.join(flags)}) is on for workspace {workspace_id}")
            if ("objectMetadata", "readability") in columns:
                readability = (await conn.execute(text(
                    f'SELECT readability FROM "{schema}"."objectMetadata" WHERE id = CAST(:obj AS uuid)'
                ), ids)).scalar()
                if readability is None or str(readability).upper() != OPEN_READABILITY:
                    shown = "unknown (no objectMetadata row)" if readability is None else str(readability)
                    return GateVerdict(f"the record access gate: object {object_metadata_id} has readability {shown}")
            if ("rowLevelPermissionPredicate", "objectMetadataId") in columns:
                deleted = (' AND "deletedAt" IS NULL'
                           if ("rowLevelPermissionPredicate", "deletedAt") in columns else "")
                predicate = (await conn.execute(text(
                    f'SELECT 1 FROM "{schema}"."rowLevelPermissionPredicate" WHERE "workspaceId" = CAST(:ws AS uuid) '
                    f'AND "objectMetadataId" = CAST(:obj AS uuid){deleted} LIMIT 1'
                ), ids)).scalar()
                if predicate is not None:
                    return GateVerdict("the record access gate: row-level permission predicates apply to "
                                       f"object {object_metadata_id}")
            if ("objectPermission", "canReadObjectRecords") in columns:
                denied = (await conn.execute(text(
                    f'SELECT 1 FROM "{schema}"."objectPermission" WHERE "workspaceId" = CAST(:ws AS uuid) '
                    'AND "objectMetadataId" = CAST(:obj AS uuid) AND "canReadObjectRecords" = false LIMIT 1'
                ), ids)).scalar()
                if denied is not None:
                    return GateVerdict("the record access gate: a role may not read the records of object "
                                       f"{object_metadata_id}")
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise db.DatabaseError(db.describe_db_error(exc, settings.pg_database_url)) from None
    return GateVerdict(None)


async def _columns(conn: object, schema: str) -> set[tuple[str, str]]:
    """(table, column) pairs of the gate's tables that exist in `schema` (older Twenty has none)."""
    rows = await conn.execute(text(  # type: ignore[attr-defined]
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = :schema "
        "AND table_name IN ('featureFlag', 'objectMetadata', 'rowLevelPermissionPredicate', 'objectPermission')"
    ), {"schema": schema})
    return {(row[0], row[1]) for row in rows}
