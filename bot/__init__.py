"""newsdigest: geopolitical news digests from many feeds, deduplicated, summarized and delivered to chats."""

__version__ = "0.1.0"
