continuum -A hello dev --start hello --args '["world"]' --run-id hello-1
export ORCHESTRATOR_JOURNAL_URL=sqlite:///continuum-dev.sqlite3
continuum -A hello runs show hello-1
