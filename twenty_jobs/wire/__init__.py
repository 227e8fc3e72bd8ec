"""The BullMQ boundary: the only package that imports `bullmq` or spells a Redis key, a job-hash
field or a Lua script name.

Key names and worker client names (`keys`), the job-hash parser (`job`), the port's Lua scripts
(`lua`) and one typed call per script (`scripts`), job counts
per state (`counts`), where a job in no state belongs (`orphans`), and the mixed-version hazards
of sharing keys with older Node bullmq (`compat`). See docs/architecture.md for the layers around
it and docs/bullmq-wire.md for the facts.
"""
