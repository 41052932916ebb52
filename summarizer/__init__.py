"""Offline news summarization: extractive on all-MiniLM-L6-v2 by default, any HF seq2seq model as an option.

This package never imports `bot`.
"""
