"""The in-memory journal: the contract kept in a process's memory, for unit tests and the
test kit. It may import the model and the journal protocol."""
