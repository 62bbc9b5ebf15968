"""photometry: ra, dec (degrees, ICRS), for exports that TOPCAT can cross-match

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('photometry', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ra', sa.Double(), nullable=True))
        batch_op.add_column(sa.Column('dec', sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('photometry', schema=None) as batch_op:
        batch_op.drop_column('dec')
        batch_op.drop_column('ra')
