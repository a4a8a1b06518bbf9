"""Serving a tf_impl SavedModel export with Ray Serve: a completions API with dynamic batching.

Why a package of its own, outside ``tf_impl``: replicas must run on the SavedModel alone, so nothing
here imports the model code (importing ``tf_impl.<anything>`` would load ``tf_impl.model``); only
TensorFlow, Ray and the standard library. ``runtime`` runs the export, ``protocol`` is the HTTP
wire format, ``app`` the Ray Serve deployment, ``cluster`` starts and stops a private loopback Ray
cluster. ``tf_impl.export`` writes the SavedModel; ``python -m harness serve`` is the command line.
"""
