"""Evaluation only: the two independent degradation generators the benchmarks score maps against
(``synth``: blob and band masks; ``soft_regions``: soft-edged regions with continuous weights), the
fixed per-patch classical baseline (``patch_baseline``) and the metrics (``metrics``). Nothing trains
on them and the runtime never imports them."""
