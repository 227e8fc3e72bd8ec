"""The BullMQ boundary: the only package that imports `bullmq` or spells a Redis key, a job-hash
field or a Lua script name.

Key names and worker client names (`keys`), the mixed-version hazards of sharing keys with older
Node bullmq (`compat`), and the arguments of the port's Lua scripts (`finish`). See
docs/architecture.md for the layers around it.
"""
