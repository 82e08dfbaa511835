"""Self-supervised objectives: BYOL (LEAD stage 1, ``byol``), MoCo v2 (the ContrastLandmarks
stage 1, ``moco``), their shared two-view augmentation (``augment``) and training loop
(``byol.train_ssl``)."""
