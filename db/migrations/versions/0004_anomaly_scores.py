"""anomaly scores on inference_results (issue 15)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 12:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

SCORES = ('anomaly_score', 'anomaly_score_bp', 'anomaly_score_rp')
PROBABILITIES = ('anomaly_p', 'anomaly_p_bp', 'anomaly_p_rp')


def upgrade() -> None:
    # plain ADD COLUMN on both engines (a partitioned PostgreSQL parent passes it to its partitions): no table
    # rebuild, the views stay valid
    for name in SCORES:
        op.add_column('inference_results', sa.Column(name, sa.REAL(), nullable=True))
    for name in PROBABILITIES:
        op.add_column('inference_results', sa.Column(name, sa.Double(), nullable=True))
    op.create_index('ix_inference_results_anomaly', 'inference_results', ['model_id', 'anomaly_score'])


def downgrade() -> None:
    bind = op.get_bind()
    op.drop_index('ix_inference_results_anomaly', table_name='inference_results')
    if bind.dialect.name != 'sqlite':
        for name in SCORES + PROBABILITIES:
            op.drop_column('inference_results', name)
        return
    # SQLite drops columns by rebuilding the table, which the views over it would block: set them aside as
    # the database has them, and restore them after
    views = [tuple(r) for r in bind.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'view'")]
    for name, _ in views:
        op.execute(f'DROP VIEW "{name}"')
    with op.batch_alter_table('inference_results') as batch_op:
        for name in SCORES + PROBABILITIES:
            batch_op.drop_column(name)
    for _, sql in views:
        op.execute(sql)
