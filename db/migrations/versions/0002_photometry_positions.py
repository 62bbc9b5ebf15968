"""photometry: ra, dec (degrees, ICRS), for exports that TOPCAT can cross-match

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


# Plain ALTER TABLE (SQLite >= 3.35 drops columns in place): a batch copy of the table would break the
# xp_apogee view, which reads photometry.
def upgrade() -> None:
    op.add_column('photometry', sa.Column('ra', sa.Double(), nullable=True))
    op.add_column('photometry', sa.Column('dec', sa.Double(), nullable=True))
    # partial index: empty until positions arrive, so exports can ask "any positions?" without a table scan
    op.create_index('ix_photometry_positioned', 'photometry', ['source_id'], unique=False,
                    sqlite_where=sa.text('ra IS NOT NULL'), postgresql_where=sa.text('ra IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_photometry_positioned', table_name='photometry')
    op.drop_column('photometry', 'dec')
    op.drop_column('photometry', 'ra')
