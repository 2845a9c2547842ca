"""The twin's services: thin asyncio adapters over the pure components (see docs/architecture.md)."""
