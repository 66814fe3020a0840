"""The model: records, events, errors, payloads, settings and the retry policy.

The vocabulary every other layer speaks. It imports nothing of the package above it, and
no I/O library.
"""
