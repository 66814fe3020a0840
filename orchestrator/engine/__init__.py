"""The workflow engine: the context a workflow awaits on, its decisions, replay, the registry.

Pure: recorded events in, decisions out, no I/O. It may import only the model.
"""
