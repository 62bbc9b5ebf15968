"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 12:48:09.837783
"""
import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


# Plain-column views for SQL users (same SQL on PostgreSQL and SQLite).
VIEWS = {
    "xp_apogee": """
        SELECT s.source_id, p.phot_g_mean_flux, p.phot_g_mean_mag, p.phot_bp_mean_mag, p.phot_rp_mean_mag,
               a.apogee_id, a.teff, a.teff_err, a.logg, a.logg_err, a.m_h, a.m_h_err, a.alpha_m, a.alpha_m_err,
               a.fe_h, a.mg_fe, a.snr, a.j, a.h, a.k, a.aspcapflag, a.starflag,
               a.pristine, a.good, a.giant, a.cool_giant, a.high_alpha
        FROM xp_spectra s
        JOIN apogee_labels a ON a.gaia_source_id = s.source_id AND a.is_primary
        LEFT JOIN photometry p ON p.source_id = s.source_id""",
    "latents": """
        SELECT r.model_id, m.name AS model, r.source_id, r.split,
               r.z1, r.z2, r.z3, r.z4, r.z5, r.z6, r.z1_sigma, r.z2_sigma, r.z3_sigma, r.z4_sigma, r.z5_sigma,
               r.z6_sigma, r.nll, r.zscore_rms, r.zscore_rms_scatter, r.bp_chi2_dof, r.rp_chi2_dof,
               a.teff, a.logg, a.m_h, a.alpha_m, a.fe_h, a.mg_fe, a.pristine, a.good, a.giant, a.cool_giant,
               a.high_alpha
        FROM inference_results r
        JOIN models m ON m.id = r.model_id
        LEFT JOIN apogee_labels a ON a.gaia_source_id = r.source_id AND a.is_primary""",
}


def upgrade() -> None:
    op.create_table('apogee_labels',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('apogee_id', sa.Text(), server_default='', nullable=False),
    sa.Column('telescope', sa.Text(), server_default='', nullable=False),
    sa.Column('field', sa.Text(), server_default='', nullable=False),
    sa.Column('gaia_source_id', sa.BigInteger(), nullable=True),
    sa.Column('gaia_g_mag', sa.REAL(), nullable=True),
    sa.Column('gaia_bp_mag', sa.REAL(), nullable=True),
    sa.Column('gaia_rp_mag', sa.REAL(), nullable=True),
    sa.Column('parallax', sa.REAL(), nullable=True),
    sa.Column('parallax_error', sa.REAL(), nullable=True),
    sa.Column('teff', sa.REAL(), nullable=True),
    sa.Column('teff_err', sa.REAL(), nullable=True),
    sa.Column('logg', sa.REAL(), nullable=True),
    sa.Column('logg_err', sa.REAL(), nullable=True),
    sa.Column('m_h', sa.REAL(), nullable=True),
    sa.Column('m_h_err', sa.REAL(), nullable=True),
    sa.Column('alpha_m', sa.REAL(), nullable=True),
    sa.Column('alpha_m_err', sa.REAL(), nullable=True),
    sa.Column('fe_h', sa.REAL(), nullable=True),
    sa.Column('fe_h_err', sa.REAL(), nullable=True),
    sa.Column('mg_fe', sa.REAL(), nullable=True),
    sa.Column('mg_fe_err', sa.REAL(), nullable=True),
    sa.Column('snr', sa.REAL(), nullable=True),
    sa.Column('j', sa.REAL(), nullable=True),
    sa.Column('h', sa.REAL(), nullable=True),
    sa.Column('k', sa.REAL(), nullable=True),
    sa.Column('sfd_ebv', sa.REAL(), nullable=True),
    sa.Column('aspcapflag', sa.BigInteger(), nullable=True),
    sa.Column('starflag', sa.BigInteger(), nullable=True),
    sa.Column('extratarg', sa.BigInteger(), nullable=True),
    sa.Column('is_primary', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('pristine', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('good', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('giant', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('cool_giant', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('high_alpha', sa.Boolean(), nullable=True),
    sa.Column('source_file', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_apogee_labels')),
    sa.UniqueConstraint('apogee_id', 'telescope', 'field', name='uq_apogee_labels_star')
    )
    with op.batch_alter_table('apogee_labels', schema=None) as batch_op:
        batch_op.create_index('ix_apogee_labels_gaia_source_id', ['gaia_source_id'], unique=False)

    op.create_table('jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('queue', sa.Text(), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('status', sa.Text(), server_default='queued', nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('max_attempts', sa.Integer(), server_default='3', nullable=False),
    sa.Column('progress_done', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('progress_total', sa.BigInteger(), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('worker', sa.Text(), nullable=True),
    sa.Column('cancel_requested', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs'))
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_status', ['status'], unique=False)

    op.create_table('photometry',
    sa.Column('source_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('phot_g_mean_flux', sa.Double(), nullable=True),
    sa.Column('phot_g_mean_mag', sa.REAL(), nullable=True),
    sa.Column('phot_bp_mean_mag', sa.REAL(), nullable=True),
    sa.Column('phot_rp_mean_mag', sa.REAL(), nullable=True),
    sa.PrimaryKeyConstraint('source_id', name=op.f('pk_photometry'))
    )
    op.create_table('xp_spectra',
    sa.Column('source_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('solution_id', sa.BigInteger(), nullable=True),
    sa.Column('bp_missing', sa.Boolean(), nullable=False),
    sa.Column('bp_basis_function_id', sa.SmallInteger(), nullable=True),
    sa.Column('bp_degrees_of_freedom', sa.SmallInteger(), nullable=True),
    sa.Column('bp_n_parameters', sa.SmallInteger(), nullable=True),
    sa.Column('bp_n_measurements', sa.SmallInteger(), nullable=True),
    sa.Column('bp_n_rejected_measurements', sa.SmallInteger(), nullable=True),
    sa.Column('bp_standard_deviation', sa.REAL(), nullable=True),
    sa.Column('bp_chi_squared', sa.REAL(), nullable=True),
    sa.Column('bp_n_relevant_bases', sa.SmallInteger(), nullable=True),
    sa.Column('bp_relative_shrinking', sa.REAL(), nullable=True),
    sa.Column('bp_coefficients', sa.LargeBinary(), nullable=True),
    sa.Column('bp_coefficient_errors', sa.LargeBinary(), nullable=True),
    sa.Column('rp_missing', sa.Boolean(), nullable=False),
    sa.Column('rp_basis_function_id', sa.SmallInteger(), nullable=True),
    sa.Column('rp_degrees_of_freedom', sa.SmallInteger(), nullable=True),
    sa.Column('rp_n_parameters', sa.SmallInteger(), nullable=True),
    sa.Column('rp_n_measurements', sa.SmallInteger(), nullable=True),
    sa.Column('rp_n_rejected_measurements', sa.SmallInteger(), nullable=True),
    sa.Column('rp_standard_deviation', sa.REAL(), nullable=True),
    sa.Column('rp_chi_squared', sa.REAL(), nullable=True),
    sa.Column('rp_n_relevant_bases', sa.SmallInteger(), nullable=True),
    sa.Column('rp_relative_shrinking', sa.REAL(), nullable=True),
    sa.Column('rp_coefficients', sa.LargeBinary(), nullable=True),
    sa.Column('rp_coefficient_errors', sa.LargeBinary(), nullable=True),
    sa.Column('source_file', sa.Text(), nullable=True),
    sa.Column('ingested_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=True),
    sa.PrimaryKeyConstraint('source_id', name=op.f('pk_xp_spectra'))
    )
    op.create_table('analysis_reports',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('report', sa.Text(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=True),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('headline', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_analysis_reports_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', name=op.f('pk_analysis_reports'))
    )
    op.create_table('analysis_statistics',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=True),
    sa.Column('report', sa.Text(), nullable=False),
    sa.Column('sample', sa.Text(), nullable=True),
    sa.Column('statistic', sa.Text(), nullable=False),
    sa.Column('subject', sa.Text(), nullable=True),
    sa.Column('bin_var', sa.Text(), nullable=True),
    sa.Column('bin_lo', sa.Double(), nullable=True),
    sa.Column('bin_hi', sa.Double(), nullable=True),
    sa.Column('value', sa.Double(), nullable=True),
    sa.Column('ci_lo', sa.Double(), nullable=True),
    sa.Column('ci_hi', sa.Double(), nullable=True),
    sa.Column('n', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_analysis_statistics_job_id_jobs'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_analysis_statistics'))
    )
    with op.batch_alter_table('analysis_statistics', schema=None) as batch_op:
        batch_op.create_index('ix_analysis_statistics_job', ['job_id'], unique=False)

    op.create_table('job_shards',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('shard', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('source_id_lo', sa.BigInteger(), nullable=False),
    sa.Column('source_id_hi', sa.BigInteger(), nullable=False),
    sa.Column('n_stars', sa.Integer(), nullable=False),
    sa.Column('status', sa.Text(), server_default='queued', nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('worker', sa.Text(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('seconds_read', sa.Double(), nullable=True),
    sa.Column('seconds_model', sa.Double(), nullable=True),
    sa.Column('seconds_write', sa.Double(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_shards_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'shard', name=op.f('pk_job_shards'))
    )
    op.create_table('models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('config', sa.JSON(), nullable=True),
    sa.Column('summary', sa.JSON(), nullable=True),
    sa.Column('n_train', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_models_job_id_jobs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_models')),
    sa.UniqueConstraint('name', name=op.f('uq_models_name'))
    )
    op.create_table('training_metrics',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('epoch', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('loss', sa.Double(), nullable=True),
    sa.Column('nll', sa.Double(), nullable=True),
    sa.Column('kl', sa.Double(), nullable=True),
    sa.Column('val_loss', sa.Double(), nullable=True),
    sa.Column('val_nll', sa.Double(), nullable=True),
    sa.Column('val_kl', sa.Double(), nullable=True),
    sa.Column('lr', sa.Double(), nullable=True),
    sa.Column('seconds', sa.Double(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_training_metrics_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'epoch', name=op.f('pk_training_metrics'))
    )
    op.create_table('xp_correlations',
    sa.Column('source_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('bp_coefficient_correlations', sa.LargeBinary(), nullable=True),
    sa.Column('rp_coefficient_correlations', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['source_id'], ['xp_spectra.source_id'],
                            name=op.f('fk_xp_correlations_source_id_xp_spectra'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('source_id', name=op.f('pk_xp_correlations'))
    )
    op.create_table('inference_results',
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('split', sa.Text(), nullable=True),
    sa.Column('z1', sa.REAL(), nullable=True),
    sa.Column('z2', sa.REAL(), nullable=True),
    sa.Column('z3', sa.REAL(), nullable=True),
    sa.Column('z4', sa.REAL(), nullable=True),
    sa.Column('z5', sa.REAL(), nullable=True),
    sa.Column('z6', sa.REAL(), nullable=True),
    sa.Column('z7', sa.REAL(), nullable=True),
    sa.Column('z8', sa.REAL(), nullable=True),
    sa.Column('z9', sa.REAL(), nullable=True),
    sa.Column('z10', sa.REAL(), nullable=True),
    sa.Column('z11', sa.REAL(), nullable=True),
    sa.Column('z12', sa.REAL(), nullable=True),
    sa.Column('z13', sa.REAL(), nullable=True),
    sa.Column('z14', sa.REAL(), nullable=True),
    sa.Column('z15', sa.REAL(), nullable=True),
    sa.Column('z16', sa.REAL(), nullable=True),
    sa.Column('z1_sigma', sa.REAL(), nullable=True),
    sa.Column('z2_sigma', sa.REAL(), nullable=True),
    sa.Column('z3_sigma', sa.REAL(), nullable=True),
    sa.Column('z4_sigma', sa.REAL(), nullable=True),
    sa.Column('z5_sigma', sa.REAL(), nullable=True),
    sa.Column('z6_sigma', sa.REAL(), nullable=True),
    sa.Column('z7_sigma', sa.REAL(), nullable=True),
    sa.Column('z8_sigma', sa.REAL(), nullable=True),
    sa.Column('z9_sigma', sa.REAL(), nullable=True),
    sa.Column('z10_sigma', sa.REAL(), nullable=True),
    sa.Column('z11_sigma', sa.REAL(), nullable=True),
    sa.Column('z12_sigma', sa.REAL(), nullable=True),
    sa.Column('z13_sigma', sa.REAL(), nullable=True),
    sa.Column('z14_sigma', sa.REAL(), nullable=True),
    sa.Column('z15_sigma', sa.REAL(), nullable=True),
    sa.Column('z16_sigma', sa.REAL(), nullable=True),
    sa.Column('nll', sa.REAL(), nullable=True),
    sa.Column('zscore_rms', sa.REAL(), nullable=True),
    sa.Column('zscore_rms_scatter', sa.REAL(), nullable=True),
    sa.Column('scatter_mean', sa.REAL(), nullable=True),
    sa.Column('bp_chi2_dof', sa.REAL(), nullable=True),
    sa.Column('rp_chi2_dof', sa.REAL(), nullable=True),
    sa.Column('bp_chi2_dof_scatter', sa.REAL(), nullable=True),
    sa.Column('rp_chi2_dof_scatter', sa.REAL(), nullable=True),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_inference_results_model_id_models'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('model_id', 'source_id', name=op.f('pk_inference_results'))
    )

    for name, sql in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {sql}")

def downgrade() -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_table('inference_results')
    op.drop_table('xp_correlations')
    op.drop_table('training_metrics')
    op.drop_table('models')
    op.drop_table('job_shards')
    with op.batch_alter_table('analysis_statistics', schema=None) as batch_op:
        batch_op.drop_index('ix_analysis_statistics_job')

    op.drop_table('analysis_statistics')
    op.drop_table('analysis_reports')
    op.drop_table('xp_spectra')
    op.drop_table('photometry')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_status')

    op.drop_table('jobs')
    with op.batch_alter_table('apogee_labels', schema=None) as batch_op:
        batch_op.drop_index('ix_apogee_labels_gaia_source_id')

    op.drop_table('apogee_labels')
