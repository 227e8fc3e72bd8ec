"""Everything twenty-jobs knows about the Node wire format lives in this package.

Queue names and per-queue settings (`queues`), the mapping from Twenty's job options to BullMQ
job options (`options`), Redis key names and worker client names (`keys`), and JSON written the
way Node's `JSON.stringify` writes it (`jsonjs`). Nothing outside `wire/` builds BullMQ opts or
Redis key strings by hand.
"""
