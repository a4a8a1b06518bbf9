"""Quality assurance around the roadmap: the troubleshooting knowledge base, live training signals and the
diagnosis of logs (``knowledge``, ``signals``, ``diagnosis``, ``diagnosis_coverage``, ``troubleshoot``), the
progress tracker (``tasks``, ``progress``, ``task_status``), the documentation check (``docs_check``) and the
pinned tool stack (``devtools``).

Imports the contract and the roadmap layer, never the models (a log or a list of numbers is what it reads).
See docs/architecture.md.
"""
