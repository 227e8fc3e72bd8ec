"""Twenty's own tables, pure data and functions: its queues and their worker configuration
(`queues`), the mapping from Twenty's job options to BullMQ job options (`options`), and JSON
written exactly as Node's `JSON.stringify` writes it (`jsonjs`). Imports nothing of the project but
the BullMQ boundary (`twenty_jobs.wire`)."""
