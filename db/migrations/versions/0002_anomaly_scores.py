"""anomaly scores on inference_results (issue 15)

Revision ID: a15_anomaly_scores
Revises: 0001
Create Date: 2026-12-01 12:40:00
"""
import importlib.util
from pathlib import Path

from alembic import op
import sqlalchemy as sa


revision = 'a15_anomaly_scores'
down_revision = '0001'
branch_labels = None
depends_on = None

SCORES = ('anomaly_score', 'anomaly_score_bp', 'anomaly_score_rp')
PROBABILITIES = ('anomaly_p', 'anomaly_p_bp', 'anomaly_p_rp')


def upgrade() -> None:
    # plain ADD COLUMN on both engines: no table rebuild, the views stay valid
    for name in SCORES:
        op.add_column('inference_results', sa.Column(name, sa.REAL(), nullable=True))
    for name in PROBABILITIES:
        op.add_column('inference_results', sa.Column(name, sa.Double(), nullable=True))
    op.create_index('ix_inference_results_anomaly', 'inference_results', ['model_id', 'anomaly_score'])


def _initial_views() -> dict:
    spec = importlib.util.spec_from_file_location('initial_schema', Path(__file__).with_name('0001_initial_schema.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.VIEWS


def downgrade() -> None:
    # SQLite drops columns by rebuilding the table, which a view on it would block: drop and restore the view
    op.execute("DROP VIEW IF EXISTS latents")
    op.drop_index('ix_inference_results_anomaly', table_name='inference_results')
    with op.batch_alter_table('inference_results') as batch_op:
        for name in SCORES + PROBABILITIES:
            batch_op.drop_column(name)
    op.execute(f"CREATE VIEW latents AS {_initial_views()['latents']}")
