"""Real test peers for the ported jobs: an HTTP webhook receiver, an SMTP server, Node helpers."""
