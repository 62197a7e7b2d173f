"""Alembic environment: emrops always passes an open connection (see emrops.db.migrations_api)."""

from alembic import context

from emrops.db.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "emrops runs Alembic programmatically with a connection; use `emrops sim init-db`"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
