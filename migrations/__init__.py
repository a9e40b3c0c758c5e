"""Alembic environment and revisions of phasebench's own tables (version table `pb_alembic_version`)."""
