"""The worker runtime (slots, routing by job name, locks, stalled check, retries, shutdown,
lifecycle) and the producer."""
