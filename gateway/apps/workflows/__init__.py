"""Workflow apps: a versioned DAG of typed nodes, run by a wire-free engine.

document.py (the definition) -> validate.py (every check, when saved) ->
engine.py (runs it, streaming events.py) over nodes/ (one module per type).
"""
