"""The journal: the :class:`~orchestrator.journal.protocol.Journal` protocol and its records,
with two adapters beside it: ``memory`` (tests, the test kit) and ``sql`` (SQLite and Postgres,
with the schema, its migrations runner and the dispatcher's queries).

It may import the model (and the engine, which it does not need); never the runtime above it.
"""
