"""analysis: the [α/M] bimodality statistics and the reconstruction report, on plain numpy arrays.

Entry points: ``run_alpha_analysis`` and ``run_reconstruction_report`` (both return ``AnalysisResult``:
SQL-ready rows, figure paths, a JSON-able headline; report.md/.html in out_dir)."""
from analysis.alpha import run_alpha_analysis
from analysis.reconstruction_report import run_reconstruction_report
from analysis.rows import ROW_FIELDS, AnalysisResult, make_row

__all__ = ["run_alpha_analysis", "run_reconstruction_report", "AnalysisResult", "ROW_FIELDS", "make_row"]
