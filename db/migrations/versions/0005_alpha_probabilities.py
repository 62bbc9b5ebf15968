"""P(high-alpha) per (model, star) (issue 15, part 1)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 14:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'alpha_probabilities',
        sa.Column('model_id', sa.Integer(), nullable=False),
        sa.Column('source_id', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('p_high_alpha', sa.Double(), nullable=False),
        sa.Column('job_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['model_id'], ['models.id'], name='fk_alpha_probabilities_model_id_models',
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name='fk_alpha_probabilities_job_id_jobs',
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('model_id', 'source_id', name='pk_alpha_probabilities'),
    )


def downgrade() -> None:
    op.drop_table('alpha_probabilities')
