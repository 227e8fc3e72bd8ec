"""Redis connections: settings, clients with logged reconnects, and the worker's pipelined
command connection."""
