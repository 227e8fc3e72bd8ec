"""The BullMQ boundary: the only package that imports `bullmq` or spells a Redis key, a job-hash
field or a Lua script name.

Key names and worker client names (`keys`), the mixed-version hazards of sharing keys with older
Node bullmq (`compat`), and the arguments of the port's Lua scripts (`finish`; queue control in
`admin_scripts`); job counts per state (`counts`) and where a job in no state belongs (`orphans`). See
docs/architecture.md for the layers around it.
"""
