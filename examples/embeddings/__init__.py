"""The embeddings pipeline of a Node BullMQ app, served by a Python worker (README.md here)."""
