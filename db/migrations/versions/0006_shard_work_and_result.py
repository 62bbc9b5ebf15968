"""job_shards.work and job_shards.result: what a shard does and what came of it (issue 16, part 1)

An inference shard is a source_id range and needs neither; an ingest shard is a group of files (`work`) and
keeps its per-file counts, bad rows and failures (`result`) until the last shard sums them into the job's.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 15:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('job_shards', sa.Column('work', sa.JSON(), nullable=True))
    op.add_column('job_shards', sa.Column('result', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('job_shards') as batch:     # SQLite drops columns by rebuilding the table
        batch.drop_column('result')
        batch.drop_column('work')
