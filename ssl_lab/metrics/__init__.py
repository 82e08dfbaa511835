"""Evaluation metrics of the thesis, each defined once (see DESIGN.md, "Metrics, defined once")."""
