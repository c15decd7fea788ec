"""Evaluation only: the degradations the benchmarks score maps against (``synth``) and the metrics
(``metrics``). Nothing trains on them and the runtime never imports them."""
