"""Chat layer: platform-neutral commands and delivery runtime, plus thin adapters (Telegram, Discord, console)."""
