"""What the harness writes from asv's record: the markdown report and the CLI table (``markdown``), the HTML
roadmap and criterion pages (``pages``, ``templates/``, ``www/``), ``asv publish`` made to work offline
(``publish``), and what keeps the recorded history one line per benchmark: the asv environment plugin
(``asv_env``) and the lossless migration of results recorded under an older key (``migrate``).

Imports the roadmap layer (``harness.roadmap``), never the models. See docs/architecture.md.
"""
