# Image of the reference deployment: the library, Flower, and the `tasks` app with its settings.
# One image serves every process (worker, dispatcher, Flower, migrations); compose picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

WORKDIR /app

# The library first: this layer is rebuilt only when the library changes, not the app.
# The sources go once installed: on PYTHONPATH they would shadow the installed package,
# whose migrations (db/ in the tree) live at orchestrator.migrations.
COPY pyproject.toml README.md ./
COPY orchestrator/ orchestrator/
COPY db/ db/
RUN pip install . flower && rm -rf orchestrator db build *.egg-info

COPY celeryconfig.py ./
COPY tasks/ tasks/

# Celery warns against running workers as root.
RUN useradd --create-home --uid 1000 app
USER app

CMD ["celery", "-A", "tasks", "worker", "-l", "info"]
