"""The worker runtime: the processes that serve queues, and the supervisor that runs several of them."""
