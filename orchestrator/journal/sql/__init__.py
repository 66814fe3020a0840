"""The SQL journal: SQLAlchemy Core over psycopg 3 (Postgres) or SQLite, its statements and
commits, the dispatcher's queries, connections and engines, the closed-run watcher, the schema
and the migrations runner. It may import the model and the journal protocol."""
